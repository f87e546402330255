"""Figure 1 of the paper on the 1-D toy (experiment=toy_1d), in one PNG:

    python scripts/figure1_toy.py --out figures/figure1.png [--epochs 30] [--seed 0]

(a) a poorly fitted G (p_g shifted off p_data) with a partially trained D; (b) D trained to convergence against that G,
which approaches D*(x) = p_data / (p_data + p_g); (c) G updated against that fixed D, moving towards the
data; (d) G and D trained from scratch with Algorithm 1 (gan-train experiment=toy_1d): near equilibrium,
p_g ~ p_data and D ~ 1/2.
Prints max |D - D*| on the data's support for panel (b).
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from hydra import compose, initialize_config_module
from hydra.utils import instantiate
from lightning import seed_everything

from gan.callbacks.figures import toy_grid
from gan.figures.toy import figure1, toy_stage


def d_steps(model, data: torch.Tensor, steps: int, optimizer, batch: int = 256) -> None:
    for _ in range(steps):
        real = data[torch.randint(len(data), (batch,))]
        with torch.no_grad():
            fake = model.generator(model.noise(batch))
        loss = model.objective.discriminator_loss(model.discriminator(real), model.discriminator(fake))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def g_steps(model, steps: int, optimizer, batch: int = 256) -> None:
    model.discriminator.requires_grad_(False)
    for _ in range(steps):
        loss = model.objective.generator_loss(model.discriminator(model.generator(model.noise(batch))))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.discriminator.requires_grad_(True)


def shift_generator(model, mean: float, std: float, optimizer, steps: int = 1500, batch: int = 512) -> None:
    """Fit G so that G(z) ~ N(mean, std^2): regress G(z) on the normal quantile of z's rank (z is uniform)."""
    normal = torch.distributions.Normal(mean, std)
    half_width = 3**0.5
    for _ in range(steps):
        z = model.noise(batch)
        u = ((z + half_width) / (2 * half_width)).clamp(1e-3, 1 - 1e-3)
        loss = torch.nn.functional.mse_loss(model.generator(z), normal.icdf(u))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="figures/figure1.png")
    parser.add_argument("--epochs", type=int, default=30, help="Algorithm 1 epochs for panel (d)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--g-lr", type=float, default=0.002, help="panel (c): SGD learning rate of the G update")
    parser.add_argument("--shift", type=float, default=2.0, help="panel (a): p_g's offset from p_data, in data stds")
    parser.add_argument("--output-dir", default="outputs/figure1", help="run folder of the panel (d) training")
    args = parser.parse_args()

    with initialize_config_module(config_module="gan.conf", version_base="1.3"):
        cfg = compose("train", overrides=["experiment=toy_1d", f"seed={args.seed}", f"paths.output_dir={args.output_dir}",
                                          f"trainer.max_epochs={args.epochs}", "+trainer.enable_checkpointing=false",
                                          "~callbacks.model_checkpoint", "logger=[]", "callbacks.rich_progress_bar.refresh_rate=0"])  # fmt: skip
    seed_everything(args.seed)
    datamodule, model = instantiate(cfg.data), instantiate(cfg.model)
    datamodule.setup()
    data = datamodule.images("train")
    xs, p_data = toy_grid(datamodule)
    opt_d = torch.optim.Adam(model.discriminator.parameters(), lr=1e-3, betas=(0.5, 0.999))
    opt_g = torch.optim.Adam(model.generator.parameters(), lr=1e-3, betas=(0.5, 0.999))

    stages = []
    # Panel (a) starts from a G that overlaps the data but is shifted: G(z) fitted to the quantiles of
    # N(mean - shift, std^2), a clean "poorly fit model" (training from scratch starts off the support).
    mean, std = float(data.mean()), float(data.std())
    shift_generator(model, mean - args.shift * std, std, opt_g)
    d_steps(model, data, 50, opt_d)
    stages.append(toy_stage(model, xs, "(a) poorly fit G, D partly trained"))
    d_steps(model, data, 3000, opt_d)
    stages.append(toy_stage(model, xs, "(b) after updating D (k large)"))
    p_g = stages[-1].p_g
    optimal = p_data / np.maximum(p_data + p_g, 1e-12)
    support = p_data > 0.05 * p_data.max()
    gap = float(np.abs(stages[-1].d - optimal)[support].max())
    # A small step for G (plain SGD): it follows D's gradient towards the data without jumping past it.
    g_steps(model, 20, torch.optim.SGD(model.generator.parameters(), lr=args.g_lr))
    stages.append(toy_stage(model, xs, "(c) after updating G"))

    from gan.utils.instantiate import instantiate_callbacks

    # Panel (d): the experiment as gan-train runs it, from a fresh G and D.
    seed_everything(args.seed)
    trained = instantiate(cfg.model)
    trainer = instantiate(cfg.trainer, callbacks=instantiate_callbacks(cfg.callbacks), logger=False)
    trainer.fit(trained, datamodule=datamodule)
    stages.append(toy_stage(trained, xs, f"(d) after {args.epochs} epochs of Algorithm 1"))
    print(figure1(stages, xs, p_data, args.out))
    print(f"panel (b): max |D(x) - p_data/(p_data+p_g)| on the data's support = {gap:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""The paper's lr/momentum schedule, its optional final anneal, and what a checkpoint restores of it."""

from __future__ import annotations

import pytest
import torch

from gan.schedules import PaperSchedule


def _optimizer() -> torch.optim.SGD:
    return torch.optim.SGD([torch.nn.Parameter(torch.zeros(2))], lr=0.1, momentum=0.5)


def _lr(scheduler: PaperSchedule) -> float:
    return scheduler.optimizer.param_groups[0]["lr"]


def test_lr_is_the_papers_closed_form_without_anneal():
    scheduler = PaperSchedule(_optimizer())
    for _ in range(7):
        scheduler.optimizer.step()
        scheduler.step()
    scheduler.set_epoch(3)
    assert _lr(scheduler) == pytest.approx(0.1 / 1.000004**7, rel=1e-12)
    assert scheduler.optimizer.param_groups[0]["momentum"] == pytest.approx(0.5 + 0.2 * 3 / 249)


def test_anneal_falls_linearly_from_its_start_epoch_and_applies_from_the_epochs_first_step():
    scheduler = PaperSchedule(_optimizer(), decay_factor=1.01, min_lr=1e-6, anneal_start_epoch=2, anneal_epochs=3)
    seen, steps = [], 0
    for epoch in range(6):
        scheduler.set_epoch(epoch)
        seen.append(_lr(scheduler) * 1.01**steps)  # before any step of the epoch, less the per-step decay
        for _ in range(2):
            scheduler.optimizer.step()
            scheduler.step()
            steps += 1
            # inside the epoch: the per-step decay times the epoch's factor
            assert _lr(scheduler) == pytest.approx(max(seen[-1] / 1.01**steps, 1e-6))
    assert seen[:5] == pytest.approx([0.1, 0.1, 0.075, 0.05, 0.025])
    assert _lr(scheduler) == 1e-6  # the last anneal factor is 0: the floor


def test_a_checkpoint_restores_the_position_and_the_config_keeps_the_shape():
    """Resuming with a new anneal (or decay) on the command line follows it: the saved state of a run that had
    none must not switch it off, and the step count must carry over."""
    before = PaperSchedule(_optimizer())
    for _ in range(10):
        before.optimizer.step()
        before.step()
    resumed = PaperSchedule(_optimizer(), decay_factor=1.00001, anneal_start_epoch=0, anneal_epochs=4)
    resumed.load_state_dict(before.state_dict())
    assert resumed.last_epoch == 10
    assert (resumed.decay_factor, resumed.anneal_start_epoch, resumed.anneal_epochs) == (1.00001, 0, 4)
    resumed.set_epoch(0)
    assert _lr(resumed) == pytest.approx(0.1 / 1.00001**10 * 0.8)


def test_a_mid_epoch_resume_steps_with_the_new_schedule_at_once():
    """Lightning restores the optimizer (with the old run's lr) and then the scheduler, and calls no epoch start
    in the middle of an epoch: the first step after the restore must already use the config's schedule."""
    before = PaperSchedule(_optimizer())
    before.set_epoch(3)
    for _ in range(5):
        before.optimizer.step()
        before.step()
    optimizer = _optimizer()
    optimizer.load_state_dict(before.optimizer.state_dict())
    resumed = PaperSchedule(optimizer, anneal_start_epoch=3, anneal_epochs=3)
    resumed.load_state_dict(before.state_dict())
    assert optimizer.param_groups[0]["lr"] == pytest.approx(0.1 / 1.000004**5 * 0.75)
    assert optimizer.param_groups[0]["momentum"] == pytest.approx(resumed.momentum_at(3))


@pytest.mark.parametrize(("start", "epochs"), [(-1, 10), (5, 0)])
def test_a_bad_anneal_is_refused_with_the_fix(start, epochs):
    with pytest.raises(ValueError, match="Fix: set both, or anneal_start_epoch=null"):
        PaperSchedule(_optimizer(), anneal_start_epoch=start, anneal_epochs=epochs)

# Sourced by the GPU scripts (bench_gpu.sh, fused_gpu.sh), which set $out and $log first.
# timed_step NAME SECONDS COMMAND...: COMMAND under a time limit, so a failing or hanging step costs only its own
# numbers; its output goes to $out/NAME.out and is appended to $log.
timed_step() {
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    echo "=== $name: $*" | tee -a "$log"
    PYTHONUNBUFFERED=1 timeout "$limit" "$@" >"$out/$name.out" 2>&1
    local rc=$?
    cat "$out/$name.out" >>"$log"
    echo "=== $name: exit $rc after $((SECONDS - start)) s" | tee -a "$log"
}

#!/usr/bin/env bash
# The cluster path on a real SLURM: a single-node cluster on this machine (Debian's packages,
# cons_tres, no accounting, a `debug` partition, one GPU declared without a device), the `ci`
# config through workflow/profiles/slurm, interrupted once and resumed, then one training job with
# device cuda submitted to the GPU. `make test-cluster`; needs root (it installs the packages when
# missing) and leaves no daemon behind. Its output ends with the figures docs/cluster.md quotes.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
BIN=${BIN:-$ROOT/.venv/bin}
WORK=$(mktemp -d /tmp/iresnet-slurm.XXXXXX)
# The config lies at SLURM's default path: the plugin's job step drops SLURM_* variables (SLURM_CONF
# too) before its srun, which then finds no config elsewhere. One this script did not write stays.
ETC=/etc/slurm
export SLURM_CONF=$ETC/slurm.conf
MARK="# written by iresnet-inverse tests/cluster/slurm.sh"
HOST=$(hostname -s)
START=$(date +%s)

say() { printf '[cluster %4ds] %s\n' $(($(date +%s) - START)) "$*"; }
fail() { say "FAILED: $*"; exit 1; }

if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
    [ "$(id -u)" = 0 ] || fail "SLURM is not installed and this is not root (apt-get needs it)"
    say "installing slurmctld slurmd slurm-client munge"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq slurmctld slurmd slurm-client munge >/dev/null
fi
[ -s /etc/munge/munge.key ] || { mungekey --create --keyfile=/etc/munge/munge.key && chown munge: /etc/munge/munge.key; }

# --- daemons, stopped by pid on any exit -------------------------------------------------------
PIDS=()
stop_daemons() {
    for pidfile in "${PIDS[@]}"; do
        [ -s "$pidfile" ] && kill "$(cat "$pidfile")" 2>/dev/null || true
    done
    if [ "$(head -1 "$SLURM_CONF" 2>/dev/null)" = "$MARK" ]; then rm -f "$SLURM_CONF" "$ETC/gres.conf"; fi
    say "daemons stopped; logs and runs in $WORK"
}
trap stop_daemons EXIT

if ! munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge: /run/munge /var/log/munge /var/lib/munge
    runuser -u munge -- munged --pid-file=/run/munge/munged.pid
    PIDS+=(/run/munge/munged.pid)
fi
munge -n | unmunge >/dev/null || fail "munge does not authenticate"

if [ -e "$SLURM_CONF" ] && [ "$(head -1 "$SLURM_CONF")" != "$MARK" ]; then
    fail "$SLURM_CONF exists and is not this script's: run the test cluster on a machine without one"
fi
if pgrep -x slurmctld >/dev/null || pgrep -x slurmd >/dev/null; then fail "a slurmctld or slurmd already runs here"; fi
mkdir -p "$ETC" "$WORK/state" "$WORK/spool"
NODE=$(slurmd -C | head -1)  # NodeName=... CPUs=... RealMemory=... as this host has them
cat >"$SLURM_CONF" <<EOF
$MARK
ClusterName=iresnet-test
SlurmctldHost=$HOST
SlurmUser=root
AuthType=auth/munge
StateSaveLocation=$WORK/state
SlurmdSpoolDir=$WORK/spool
SlurmctldPidFile=$WORK/slurmctld.pid
SlurmdPidFile=$WORK/slurmd.pid
SlurmctldLogFile=$WORK/slurmctld.log
SlurmdLogFile=$WORK/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
MpiDefault=none
ReturnToService=2
MinJobAge=300
$NODE Gres=gpu:1 State=UNKNOWN
PartitionName=debug Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF
echo "NodeName=$HOST Name=gpu File=/dev/null" >"$ETC/gres.conf"  # a GPU without a GPU

slurmctld -f "$SLURM_CONF" && PIDS+=("$WORK/slurmctld.pid")
slurmd -f "$SLURM_CONF" && PIDS+=("$WORK/slurmd.pid")
for _ in $(seq 60); do
    state=$(sinfo -h -o %t 2>/dev/null || true)
    [ "$state" = idle ] && break
    sleep 1
done
[ "$state" = idle ] || fail "the node is '$state', not idle (see $WORK/slurmd.log)"
say "cluster up: $(sinfo -h -o '%P %D %c CPUs %m MB %G')"

# --- the ci config through the profile ---------------------------------------------------------
# ci.yaml with cluster job sizes unlike the training jobs' defaults (60 min, 4000 MB), so that the
# check can tell that each job asked for its own; and the same with device cuda.
"$BIN/python" -c '
import sys, yaml
cfg = yaml.safe_load(open(sys.argv[1]))
cfg["cluster"] = {"runtime": 30, "mem_mb": 1500}
yaml.safe_dump(cfg, open(sys.argv[2] + "/cluster.yaml", "w"))
cfg.update(device="cuda", search={"trials": 0})
yaml.safe_dump(cfg, open(sys.argv[2] + "/gpu.yaml", "w"))
' "$ROOT/config/ci.yaml" "$WORK"
snake() { # snake DIR CONFIG ARGS...: the workflow in DIR through the project's SLURM profile
    local dir=$1 config=$2
    shift 2
    "$BIN/snakemake" --snakefile "$ROOT/Snakefile" --directory "$dir" --configfile "$config" \
        --profile "$ROOT/workflow/profiles/slurm" --slurm-status-command squeue \
        --slurm-init-seconds-before-status-checks 5 --seconds-between-status-checks 5 --verbose "$@"
}
RUN=$WORK/ci
CHECK=("$BIN/python" "$ROOT/tests/cluster/check.py")
EXPECTED=$(snake "$RUN" "$WORK/cluster.yaml" --dry-run 2>/dev/null | "${CHECK[@]}" plan)
say "the ci config has $EXPECTED jobs for sbatch"

say "run 1 (interrupted once a training job has finished)"
set -m # its own process group, with SIGINT not ignored: as a run started from a terminal
snake "$RUN" "$WORK/cluster.yaml" >"$WORK/run1.log" 2>&1 &
SNAKE_PID=$!
set +m
until grep -q '^Finished jobid: .* (Rule: train)' "$WORK/run1.log"; do
    kill -0 $SNAKE_PID 2>/dev/null || fail "run 1 ended early (see $WORK/run1.log)"
    sleep 2
done
queued=$(squeue -h | wc -l)
kill -INT -- -$SNAKE_PID # Ctrl-C
if wait $SNAKE_PID; then fail "run 1 was interrupted but exited 0"; fi
sleep 2
left=$(squeue -h | wc -l)
say "interrupted with $queued jobs in the queue; after exit: $left left (orphans)"
[ "$left" = 0 ] || fail "interrupted run left $left SLURM jobs behind"
outputs() { find "$RUN/results" -type f \( -name '*.nc' -o -name model.pt \) -printf '%p %T@\n' | sort; }
outputs >"$WORK/done-before"

say "run 2 (resume)"
snake "$RUN" "$WORK/cluster.yaml" >"$WORK/run2.log" 2>&1 || fail "run 2 failed (see $WORK/run2.log)"
outputs >"$WORK/done-after"
"${CHECK[@]}" runs "$EXPECTED" "$WORK/run1.log" "$WORK/run2.log" --config "$WORK/cluster.yaml" \
    --done-before "$WORK/done-before" --done-after "$WORK/done-after" || fail "runs do not match the plan"

# --- one training job with device cuda: submitted to the declared GPU ---------------------------
GPU=$WORK/gpu
mkdir -p "$GPU/results"
cp -r "$RUN/results/data" "$GPU/results/"
CELL=operator~blur/noise_level~0.05/lipschitz~0.9/objective~reconstruction/arch~iresnet_ci/seed~0
# The recipe of docs/cluster.md: the partition on the command line, every other default kept
# (last: the option takes every word after it, a target too).
if snake "$GPU" "$WORK/gpu.yaml" --retries 0 "results/train/$CELL/model.pt" \
    --default-resources slurm_partition=debug >"$WORK/gpu.log" 2>&1; then
    fail "a cuda job ran on a node without CUDA"
fi
"${CHECK[@]}" gpu "$WORK/gpu.log" "$GPU/.snakemake/slurm_logs" || fail "the GPU job was not submitted as intended"
say "passed in $(($(date +%s) - START)) s"

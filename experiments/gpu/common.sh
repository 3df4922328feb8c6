# Shared by the GPU scripts: environment and $OUT; with STAGE set also the result folder $R, the sampling flags $D
# and `t SECONDS NAME CMD...`, which runs CMD under a time limit with its output in $R/NAME.log and prints the exit
# code and the log's end.
export OUT=${OUT:-outputs/gpu}
export PYTHONPATH=$PWD/src:${PYTHONPATH:-} PYTHONUNBUFFERED=1 DIFFLAB_OFFLINE=1
mkdir -p "$OUT"
if [ -n "${STAGE:-}" ]; then
  R=$OUT/$STAGE
  mkdir -p "$R"
  D="--device cuda --batch-size 2000"
  t() { local s=$1 name=$2; shift 2; echo "== $name ($(date +%T))"; timeout "$s" "$@" > "$R/$name.log" 2>&1
        echo "rc=$? $(tail -c 600 "$R/$name.log")"; }
fi

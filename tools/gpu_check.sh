#!/usr/bin/env bash
# The checks that need a GPU, in under 8 minutes on one H100 (each piece under its own timeout):
#
#   1. preflight   which Python, jax and device; stops with a clear message when there is no GPU
#                  or a module is missing
#   2. kernel      the Pallas decode-attention kernel compiled for the GPU against the jnp reference
#                  at the config's decode shapes (batch 1 and 6, bf16 and f32), both timed
#   3. latency     `alpamayo bench latency` of the config's random-weight policy (bf16 weights drawn on
#                  the GPU), 1 and 6 samples, with and without reasoning (40 tokens)
#   4. summary     the measured stages next to the README's roofline bound of the same workload
#
# Usage, from the repository root:
#   bash tools/gpu_check.sh [OUT_DIR]      results in OUT_DIR, else $OUT, else runs/gpu_check
#
# Environment:
#   GPU_CHECK_CONFIG=configs/r1_release.py  the model to time
#   GPU_CHECK_DRY_RUN=1                     the same steps on CPU with configs/tiny.py and small
#                                           settings (the kernel interpreted): tests this script
#   GPU_CHECK_PYTHON=...                    the interpreter (default: .venv/bin/python if it imports
#                                           jax, else python3); the repo is put on PYTHONPATH, so
#                                           no `pip install -e .` is needed
#   GPU_CHECK_WHEELS=.whl                   wheels to install first (--no-index, into a temporary
#                                           folder on PYTHONPATH): on a machine without a registry,
#                                           carry what preflight says is missing, e.g.
#                                           `pip download --no-deps -d .whl ml-collections==1.1.0`
#   GPU_CHECK_TOKENIZER=FILE                the real Qwen tokenizer.json (default: a stand-in of the
#                                           same shape, tools/gpu_check.py tokenizer)
#   GPU_CHECK_SAMPLES=6 GPU_CHECK_REASONING_TOKENS=40 GPU_CHECK_STEPS=3
#   GPU_CHECK_BUDGET=470                    seconds for the whole check; the latency piece gets
#                                           what the others leave (GPU_CHECK_TIMEOUT_LATENCY fixes it)
#   GPU_CHECK_TIMEOUT_KERNEL=90             seconds for the kernel piece
#
# Files in the output folder (five, for a device tool that returns few): gpu_check.log (every
# piece's output), kernel.json, latency.json, roofline.json, summary.md. Exit status: 0 when every
# piece passed, 1 when one failed or timed out, 3 when the preflight failed.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
repo=$(pwd)
out=${1:-${OUT:-runs/gpu_check}}
mkdir -p "$out"
log=$out/gpu_check.log
: >"$log"
scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT

dry_run=${GPU_CHECK_DRY_RUN:-0}
if [[ $dry_run == 1 ]]; then
  config=${GPU_CHECK_CONFIG:-configs/tiny.py}
  samples=${GPU_CHECK_SAMPLES:-2}
  reasoning=${GPU_CHECK_REASONING_TOKENS:-4}
  steps=${GPU_CHECK_STEPS:-1}
  kernel_flags=(--interpret)
  preflight_flags=(--allow-cpu)
  export JAX_PLATFORMS=${JAX_PLATFORMS:-cpu}
else
  config=${GPU_CHECK_CONFIG:-configs/r1_release.py}
  samples=${GPU_CHECK_SAMPLES:-6}
  reasoning=${GPU_CHECK_REASONING_TOKENS:-40}
  steps=${GPU_CHECK_STEPS:-3}
  kernel_flags=()
  preflight_flags=()
fi
budget=${GPU_CHECK_BUDGET:-470}
timeout_kernel=${GPU_CHECK_TIMEOUT_KERNEL:-90}
summary_reserve=30

# -- the interpreter ------------------------------------------------------------------------------
if [[ -n ${GPU_CHECK_PYTHON:-} ]]; then
  python=$GPU_CHECK_PYTHON
elif [[ -x .venv/bin/python ]] && .venv/bin/python -c 'import jax' 2>/dev/null; then
  python=.venv/bin/python
else
  python=python3
fi
wheels=${GPU_CHECK_WHEELS:-.whl}
if compgen -G "$wheels/*.whl" >/dev/null; then
  site=$scratch/site
  "$python" -m pip install -q --no-index --no-deps --no-compile --target "$site" "$wheels"/*.whl
  export PYTHONPATH="$site:$repo${PYTHONPATH:+:$PYTHONPATH}"
else
  export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONUNBUFFERED=1
# A persistent compilation cache: the bench compiles the same flow program for 1 and for 10 Euler
# steps (the second becomes a lookup), and a rerun on the same machine after a timeout skips every
# compile the first run finished. On a GPU it lives in the repo (ignored by git); a dry run's
# stays in the scratch folder.
if [[ $dry_run == 1 ]]; then
  default_cache=$scratch/jax_cache
else
  default_cache=$repo/.gpu_check_cache
fi
export JAX_COMPILATION_CACHE_DIR=${JAX_COMPILATION_CACHE_DIR:-$default_cache}
export JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS=0 JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES=0

failed=0
# run NAME SECONDS ARGS...: one piece under `timeout`, its output on the screen and in the log.
run() {
  local name=$1 seconds=$2
  shift 2
  local start=$SECONDS status=0
  echo "== $name (at most ${seconds} s)" | tee -a "$log"
  timeout --kill-after=10 "$seconds" "$python" tools/gpu_check.py "$@" 2>&1 | tee -a "$log" || status=$?
  if ((status == 124 || status == 137)); then
    echo "== $name: timed out after ${seconds} s" | tee -a "$log"
  elif ((status != 0)); then
    echo "== $name: failed (exit $status)" | tee -a "$log"
  fi
  echo "== $name: $((SECONDS - start)) s" | tee -a "$log"
  return "$status"
}

if ! run preflight 60 preflight "${preflight_flags[@]}"; then
  echo "gpu_check: preflight failed; see $log" >&2
  exit 3
fi
run kernel "$timeout_kernel" kernel --config "$config" --out "$out" "${kernel_flags[@]}" || failed=1

tokenizer=${GPU_CHECK_TOKENIZER:-}
if [[ -z $tokenizer ]]; then
  tokenizer=$scratch/standin_tokenizer.json
  run tokenizer 60 tokenizer --config "$config" --out "$tokenizer" || failed=1
  [[ -f $tokenizer ]] || tokenizer=""
fi
latency_flags=(--samples "$samples" --reasoning-tokens "$reasoning" --steps "$steps")
[[ -n $tokenizer ]] && latency_flags+=(--tokenizer "$tokenizer")
timeout_latency=${GPU_CHECK_TIMEOUT_LATENCY:-$((budget - SECONDS - summary_reserve))}
if ((timeout_latency < 60)); then
  timeout_latency=60
fi
run latency "$timeout_latency" latency --config "$config" --out "$out" "${latency_flags[@]}" || failed=1
run summary "$summary_reserve" summary --config "$config" --out "$out" || failed=1

echo "gpu_check: results in $out (summary.md); $([[ $failed == 0 ]] && echo 'all passed' || echo 'some piece failed')"
exit "$failed"

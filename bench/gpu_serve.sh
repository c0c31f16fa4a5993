#!/usr/bin/env bash
# The streaming service on one GPU: bench/serve.py with the live Whisper graph
# (graphs/whisper_cnn_live.yaml), its encoder and CNN predictor batched across sessions on
# cuda (the encoder in torch: vis.backend=torch), the encoder every HOP_MS (default 80) with
# 160 - HOP_MS of lookahead (the graph's 142.5 ms at any hop), the server as WORKERS processes
# sharing its port (audio2anim serve --workers). SHARED=on (the default): the workers send their
# batched calls to one model process on the GPU (--shared-models); off: each worker runs its own
# models on it (--no-shared-models); both: one server of each, side by side. With RAY=local a
# server on Ray Serve beside them (a local Ray instance: WORKERS session front ends,
# RAY_MODEL_REPLICAS model replicas sharing the GPU, default 1; RAY_DIRECT=1: the speakers
# stream to the front ends' own port, not the proxy; RAY_MODEL_CALLS=serve: the model calls
# through the deployment's handle, not the replicas' sockets; needs the ray extra); it runs
# last at each N, and its processes load the machine while the others run, so measure the
# others without it; RAY_ONLY=1 measures it alone. N = 100 … 400 real-time speakers from 8
# client processes. The speakers read the shipped recording (audio2anim/assets/speech.wav) at seven
# offsets, so the machine needs no TTS voices and no network.
#
#   OUT=/tmp/out bench/gpu_serve.sh                    # .venv/bin/python
#   PYTHON=/opt/venv/bin/python OUT=/tmp/out bench/gpu_serve.sh
#   HOP_MS=40 SHARED=both SPEAKERS=1,100,200 STOP_AFTER=9 RAY=local OUT=/tmp/out bench/gpu_serve.sh
#   SPEAKERS=20,50 WINDOWS=0,5 CHUNK_MS=40 PROCS=4 WORKERS=1 DEVICE=cpu OUT=/tmp/out bench/gpu_serve.sh
#
# Writes under $OUT: serve_gpu.md (the table), serve-gpu-latency.png (the plot, with
# matplotlib), serve_gpu.log (each level as it ends), performance.md (docs/performance.md with
# the table in its section serve_gpu, or serve_gpu_ray with RAY_ONLY) and env.txt (GPU, torch, load).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-.venv/bin/python}
OUT=${OUT:?set OUT to a folder for the results}
SPEAKERS=${SPEAKERS:-100,200,300,400}
SHARED=${SHARED:-on}
HOP_MS=${HOP_MS:-80}
WINDOWS=${WINDOWS:-5}
SECONDS_PER_LEVEL=${SECONDS_PER_LEVEL:-12}
CHUNK_MS=${CHUNK_MS:-20}
DEVICE=${DEVICE:-cuda}
PROCS=${PROCS:-8}
WORKERS=${WORKERS:-12}
RAY=${RAY:-}  # e.g. local: one more server on Ray Serve (WORKERS ingress replicas)
RAY_MODEL_REPLICAS=${RAY_MODEL_REPLICAS:-1}  # sharing the one GPU, 1/N of it each
RAY_MODEL_CALLS=${RAY_MODEL_CALLS:-socket}  # or serve: through the deployment's handle
RAY_ONLY=${RAY_ONLY:-}  # 1: the server on Ray Serve alone (no process server beside it)
RAY_DIRECT=${RAY_DIRECT:-}  # 1: the speakers connect to the ingress replicas' own port, not the proxy
WARM=${WARM:-}  # the servers' --warm-batches N (default: theirs, off)
# CPU_MODELS: the servers' --cpu-models when set (unset: theirs, the predictor on the CPU;
# CPU_MODELS= puts it on the GPU too)
STOP_AFTER=${STOP_AFTER:-2}  # levels in a row over the goal before a server is left out
mkdir -p "$OUT"
GPU=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -1 | sed 's/^NVIDIA //' || true)
GPU=${GPU:-$DEVICE}
export PYTHONPATH=$PWD${PYTHONPATH:+:$PYTHONPATH}
export AUDIO2ANIM_CACHE=${AUDIO2ANIM_CACHE:-${TMPDIR:-/tmp}/audio2anim-cache}
ulimit -n 65536 2>/dev/null || true
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    "$PYTHON" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"
    nproc
    uptime
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
"$PYTHON" bench/serve.py \
    --graph graphs/whisper_cnn_live.yaml --set vis.backend=torch \
    --set vis.hop_s=$(awk "BEGIN{print $HOP_MS/1000}") --set vis.lookahead_s=$(awk "BEGIN{print (160-$HOP_MS)/1000}") \
    --device "$DEVICE" --batch-window-ms "$WINDOWS" --chunk-ms "$CHUNK_MS" \
    --speakers "$SPEAKERS" --seconds "$SECONDS_PER_LEVEL" --client-procs "$PROCS" --workers "$WORKERS" --shared-models "$SHARED" --stop-after "$STOP_AFTER" ${WARM:+--warm-batches "$WARM"} ${CPU_MODELS+--cpu-models "$CPU_MODELS"} ${RAY:+--ray "$RAY" --ray-model-replicas "$RAY_MODEL_REPLICAS" --ray-gpus-per-model-replica "$(awk "BEGIN{print 1/$RAY_MODEL_REPLICAS}")"} ${RAY_DIRECT:+--ray-direct} ${RAY_ONLY:+--ray-only} ${RAY:+--ray-model-calls "$RAY_MODEL_CALLS"} \
    --audio audio2anim/assets/speech.wav \
    --plot "$OUT/serve-gpu-latency.png" \
    --write-docs --section "serve_gpu${RAY_ONLY:+_ray}" --machine "1× $GPU, $(nproc) cores, $WORKERS server processes" \
    > "$OUT/serve_gpu.md" 2> >(tee "$OUT/serve_gpu.log" >&2)
cp docs/performance.md "$OUT/performance.md"
cat "$OUT/serve_gpu.md"

#!/bin/bash
# Start-up of the flowhash commands: wall seconds of 3 runs each.
# usage: bench/startup.sh REPO DB   (a snippet at /tmp/ap_start/snip.wav; see bench/results/audiopath.md)
cd "$1"
for cmd in "-c import\ torch" "-m faiss_flowhash.cli --help" "-m faiss_flowhash.cli list $2" "-m faiss_flowhash.cli stats $2" "-m faiss_flowhash.cli query $2 /tmp/ap_start/snip.wav"; do
  ts=()
  for i in 1 2 3; do
    s=$(date +%s.%N); eval python $cmd > /dev/null 2>&1; e=$(date +%s.%N)
    ts+=($(python3 -c "print(f'{$e-$s:.2f}')"))
  done
  echo "$cmd: ${ts[*]}"
done

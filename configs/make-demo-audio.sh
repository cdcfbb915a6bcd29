#!/usr/bin/env bash
# Makes the demo catalog: a few short synthetic "songs" (tones + drum-like
# noise bursts) in several formats and folders, so the demo needs no download.
# Usage: configs/make-demo-audio.sh DIR   (files that exist are kept)
set -euo pipefail
dir=${1:-demo-input}
command -v ffmpeg >/dev/null || { echo "make-demo-audio: ffmpeg is needed (apt-get install ffmpeg)" >&2; exit 1; }
mkdir -p "$dir/album-a" "$dir/album-b"
gen() { # out seconds rate channels expression [codec args...]
  local out=$1 secs=$2 rate=$3 ch=$4 expr=$5; shift 5
  [ -s "$out" ] && return 0
  local tmp="${out%.*}.part.${out##*.}"
  ffmpeg -nostdin -loglevel error -y -f lavfi -i "aevalsrc=exprs=${expr//,/\\,}:s=${rate}:d=${secs}" \
    -ac "$ch" "$@" "$tmp" && mv "$tmp" "$out"
}
tone='0.25*sin(2*PI*220*t)+0.15*sin(2*PI*277.18*t)+0.12*sin(2*PI*329.63*t)'
drums='0.6*(random(0)*2-1)*exp(-50*mod(t,0.5))+0.5*sin(2*PI*60*t)*exp(-20*mod(t+0.25,1))'
gen "$dir/album-a/01 intro.flac" 20 44100 2 "${tone}+${drums}|${tone}*0.8+${drums}" -c:a flac
gen "$dir/album-a/02 groove.mp3" 30 44100 2 "0.3*sin(2*PI*196*t)+${drums}|0.3*sin(2*PI*246.94*t)+${drums}" -c:a libmp3lame -b:a 192k
gen "$dir/album-b/03 ballad.ogg" 25 48000 2 "${tone}|${tone}" -c:a libvorbis -q:a 5
gen "$dir/album-b/04 mono demo.wav" 15 22050 1 "${tone}+${drums}" -c:a pcm_s16le
echo "make-demo-audio: demo catalog in $dir"

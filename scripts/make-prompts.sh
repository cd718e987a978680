#!/bin/sh
# Generate the shipped prompts in config/prompts/ (8 kHz, mono, 16-bit WAV) with
# espeak-ng (speech) and sox (tones, resampling). Re-run after editing a text below;
# the outputs are committed so the daemon needs neither tool at runtime.
set -eu
OUT="${1:-$(dirname "$0")/../config/prompts}"
VOICE="${VOICE:-en-us}"
SPEED="${SPEED:-150}"
mkdir -p "$OUT"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

say() {  # say NAME "text"
    espeak-ng -v "$VOICE" -s "$SPEED" -w "$TMP/$1.raw.wav" "$2"
    sox "$TMP/$1.raw.wav" -r 8000 -c 1 -b 16 -e signed-integer "$OUT/$1.wav" norm -3 silence 1 0.02 0.5% reverse silence 1 0.02 0.5% reverse
}

tone() {  # tone NAME seconds freq
    sox -n -r 8000 -c 1 -b 16 -e signed-integer "$OUT/$1.wav" synth "$2" sine "$3" vol 0.25
}

for d in 0 1 2 3 4 5 6 7 8 9; do
    say "digit-$d" "$d"
done
say captcha-intro "To reach the person you are calling, please enter the following digits."
say captcha-retry "That was not correct. Please try again."
say captcha-fail "Sorry, we could not verify your call. Goodbye."
say invalid-option "That is not a valid option."
say menu-invalid "That is not a valid option. Please try again."
say menu-timeout "We did not receive your choice."
say goodbye "Goodbye."
say menu-default "Thank you for calling. Please choose from the following options."
say voicemail-greeting "Please leave a message after the tone."
tone beep 0.5 1000

# Vacant-code SIT (ANSI T1.401): 913.8 Hz and 1370.6 Hz for 274 ms, 1776.7 Hz for 380 ms.
tone sit-1 0.274 913.8
tone sit-2 0.274 1370.6
tone sit-3 0.380 1776.7
say not-in-service-message "The number you have dialed is not in service."
sox "$OUT/sit-1.wav" "$OUT/sit-2.wav" "$OUT/sit-3.wav" "$OUT/not-in-service-message.wav" "$OUT/not-in-service.wav"
rm -f "$OUT/sit-1.wav" "$OUT/sit-2.wav" "$OUT/sit-3.wav" "$OUT/not-in-service-message.wav"
ls -1 "$OUT"

#!/usr/bin/env bash
# The examples of docs/storage.md work as written: every ```console block is run in order in one
# fresh folder (lines starting "$ " are commands, the lines after one are its expected standard
# output and error), and what each command prints must match, except for the fields that differ
# on every run: disk signatures, volume ids, dates and times.
set -euo pipefail

work=$(mktemp -d "${TMPDIR:-/tmp}/mf-e2e-103.XXXXXX")
trap 'rm -rf "$work"' EXIT
cd "$work"

PATH="$MF_BUILD:$PATH" python3 - "$MF_SRC/docs/storage.md" <<'EOF'
import re, subprocess, sys

doc = open(sys.argv[1], encoding="utf-8").read()
blocks = re.findall(r"^```console\n(.*?)^```$", doc, flags=re.S | re.M)
assert len(blocks) >= 5, "docs/storage.md lost its examples"

def normalize(text):
    text = re.sub(r"0x[0-9A-F]{8}", "0xSIGNATURE", text)
    text = re.sub(r"\b[0-9A-F]{4}-[0-9A-F]{4}\b", "VOLUME-ID", text)
    text = re.sub(r"\d{4}-\d{2}-\d{2}", "DATE", text)
    # mdir writes the hour without a leading zero, right-aligned: " 0:02" as "14:02".
    text = re.sub(r" *\b\d{1,2}:\d{2}(:\d{2})?", " TIME", text)
    lines = [line.rstrip() for line in text.split("\n")]
    while lines and not lines[-1]:
        lines.pop()
    return "\n".join(lines)

commands = 0
for block in blocks:
    steps = []
    for line in block.rstrip("\n").split("\n"):
        if line.startswith("$ "):
            steps.append([line[2:], []])
        else:
            assert steps, f"output before any command: {line!r}"
            steps[-1][1].append(line)
    for command, expected in steps:
        result = subprocess.run(["bash", "-c", command], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        got, want = normalize(result.stdout), normalize("\n".join(expected))
        if got != want:
            print(f"FAIL: docs/storage.md: `{command}` (exit status {result.returncode}) printed:\n"
                  f"{result.stdout}\n--- the page shows:\n" + "\n".join(expected), file=sys.stderr)
            sys.exit(1)
        commands += 1
print(f"ok {commands} commands of docs/storage.md")
EOF

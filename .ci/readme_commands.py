"""Prints code block N (1 or 2) of README.md's "Two commands" section, so CI runs exactly what
a user types. Fails unless the section holds exactly two code blocks."""
import re
import sys

text = open(sys.argv[1], encoding="utf-8").read()
section = re.search(r"^## Two commands\n(.*?)(?=^## )", text, re.S | re.M)
if not section:
    sys.exit("README.md has no '## Two commands' section")
blocks = re.findall(r"^```(?:bash|sh)?\n(.*?)^```", section.group(1), re.S | re.M)
if len(blocks) != 2:
    sys.exit(f"README.md's 'Two commands' section has {len(blocks)} code blocks, not 2")
print(blocks[int(sys.argv[2]) - 1].strip())

#!/usr/bin/env python3
"""Wraps // and /// comment lines longer than 120 characters; CSharpier formats code but leaves comments as written.

Usage: scripts/wrap-comments.py FILE...   (rewrites the files in place)
"""
import re
import sys
import textwrap

WIDTH = 120
COMMENT = re.compile(r'^(\s*)(///|//) ?(.*)$')

for path in sys.argv[1:]:
    with open(path, encoding='utf-8') as file:
        lines = file.read().split('\n')
    wrapped = []
    for line in lines:
        match = COMMENT.match(line)
        if len(line) <= WIDTH or not match:
            wrapped.append(line)
            continue
        indent, marker, text = match.groups()
        prefix = f"{indent}{marker} "
        parts = textwrap.wrap(text, width=WIDTH - len(prefix), break_long_words=False, break_on_hyphens=False)
        wrapped.extend(prefix + part for part in parts)
    with open(path, 'w', encoding='utf-8') as file:
        file.write('\n'.join(wrapped))

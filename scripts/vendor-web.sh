#!/usr/bin/env bash
# Remakes crates/liteobs-server/web/vendor/ (the page's only third-party code: d3-force and the
# three d3 modules it needs, their UMD builds as published on npm) from the registry, pinned by
# version and by npm's sha512 integrity. The result is committed, so that building the server
# needs neither Node nor network; run this only to change a version, then review the diff.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh
command -v npm >/dev/null || ensure_packages nodejs npm

out=crates/liteobs-server/web/vendor
# In load order: each after what it requires (d3-force needs the other three).
packages=(
    "d3-dispatch 3.0.1 sha512-rzUyPU/S7rwUflMyLc1ETDeBj0NRuHKKAcvukozwhshr6g6c5d8zh4c2gQjY2bZ0dXeGLWc1PF174P2tVvKhfg=="
    "d3-quadtree 3.0.1 sha512-04xDrxQTDTCFwP5H6hRhsRcb9xxv2RzkcsygFzmkSIOJy3PeRJP7sNk3VRIbKXcog561P9oU0/rVH6vDROAgUw=="
    "d3-timer 3.0.1 sha512-ndfJ/JxxMd3nw31uyKoY2naivF+r29V+Lc0svZxe1JvvIRmi8hUsrMvdOwgS1o6uBHmiz91geQ0ylPP0aj1VUA=="
    "d3-force 3.0.0 sha512-zxV/SsA+U4yte8051P4ECydjD/S+qeYtnaIyAs9tgHCqfguma/aAQDjo85A9Z6EKhBirHRJHXIgJUlffT4wdLg=="
)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
bundle="$work/d3-force.min.js"
: >"$bundle"
for entry in "${packages[@]}"; do
    read -r name version integrity <<<"$entry"
    (cd "$work" && npm pack --silent "$name@$version" >/dev/null)
    tarball="$work/$name-$version.tgz"
    got="sha512-$(openssl dgst -sha512 -binary "$tarball" | base64 -w0)"
    [ "$got" = "$integrity" ] || die "$name@$version: integrity $got, expected $integrity"
    mkdir -p "$work/$name"
    tar -xzf "$tarball" -C "$work/$name" --strip-components=1
    cat "$work/$name/dist/$name.min.js" >>"$bundle"
    printf '\n' >>"$bundle"
    say "$name@$version verified"
done
cp "$bundle" "$out/d3-force.min.js"
{
    echo "vendor/d3-force.min.js is, concatenated in this order, the dist/*.min.js files of:"
    for entry in "${packages[@]}"; do read -r name version _ <<<"$entry"; echo "  $name $version (npm)"; done
    echo "made by scripts/vendor-web.sh. Their licences (ISC), as each package ships it:"
    for entry in "${packages[@]}"; do
        read -r name _ _ <<<"$entry"
        printf '\n--- %s ---\n' "$name"
        cat "$work/$name/LICENSE"
    done
} >"$out/LICENSE"
say "wrote $out ($(wc -c <"$out/d3-force.min.js") bytes)"

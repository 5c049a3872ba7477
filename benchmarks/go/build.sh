#!/usr/bin/env bash
# Builds the Go side of benchmarks/go_compare.py, offline, from Debian bookworm's packages:
#   goupstream  a Go gRPC upstream (grpc-go 1.33.3): LibraryService.GetBook and
#               StreamService.Count, as benchmarks/upstream.py and stream_upstream.py serve them
#   gogateway   grpc-gateway v1 (1.6.4) in front of it, with the generated handlers of both
#
# Usage: benchmarks/go/build.sh [--install] [--force] [OUT]
#   OUT        where everything is built (default .venv/go-bench, under the repo: gitignored);
#              the binaries end up in OUT/bin
#   --install  apt-get install the Debian packages first (root or sudo); without it a missing
#              tool or source package stops the build with the package names
#   --force    rebuild even when OUT/bin matches the inputs (OUT/inputs.sha256)
#
# GOPATH mode (GO111MODULE=off) over Debian's /usr/share/gocode: nothing is fetched, the Go
# module proxy is never asked. Inputs, all read from this checkout: benchmarks/go/*/main.go,
# benchmarks/go/stream.proto, protos/edgedemo/library/v1/library.proto and this script.
set -euo pipefail

PACKAGES=(golang-go golang-google-grpc-dev golang-goprotobuf-dev golang-google-genproto-dev
  golang-github-grpc-ecosystem-grpc-gateway-dev golang-grpc-gateway protoc-gen-go-1-3
  protobuf-compiler libprotobuf-dev)

HERE=$(cd "$(dirname "$0")" && pwd)
REPO=$(cd "$HERE/../.." && pwd)
install=0 force=0 out=""
for arg in "$@"; do
  case "$arg" in
    --install) install=1 ;;
    --force) force=1 ;;
    -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    -*) echo "build.sh: unknown option $arg" >&2; exit 2 ;;
    *) out=$arg ;;
  esac
done
out=${out:-$REPO/.venv/go-bench}
mkdir -p "$out"
OUT=$(cd "$out" && pwd)

if [ "$install" = 1 ]; then
  sudo=""
  if [ "$(id -u)" != 0 ]; then sudo=sudo; fi
  # From the lists already on the machine; refresh them only if that fails (as scripts/bench).
  $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}" || {
    $sudo apt-get update -qq &&
      $sudo env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${PACKAGES[@]}"
  }
fi

# What must be there: the tools, and the Go sources GOPATH mode builds from.
GOCODE=/usr/share/gocode/src
GWAPI=$GOCODE/github.com/grpc-ecosystem/grpc-gateway/third_party/googleapis/google/api
missing=()
need() {  # PATH-OR-COMMAND PACKAGE
  if [[ $1 == /* ]]; then [ -e "$1" ] || missing+=("$2 ($1)")
  else command -v "$1" >/dev/null || missing+=("$2 ($1)"); fi
}
need go golang-go
need protoc protobuf-compiler
need protoc-gen-go protoc-gen-go-1-3
need protoc-gen-grpc-gateway golang-grpc-gateway
need /usr/include/google/protobuf/timestamp.proto libprotobuf-dev
need "$GOCODE/google.golang.org/grpc/server.go" golang-google-grpc-dev
need "$GOCODE/github.com/golang/protobuf/proto/lib.go" golang-goprotobuf-dev
need "$GOCODE/google.golang.org/genproto/protobuf/field_mask" golang-google-genproto-dev
need "$GOCODE/github.com/grpc-ecosystem/grpc-gateway/runtime" \
  golang-github-grpc-ecosystem-grpc-gateway-dev
need "$GWAPI/annotations.proto" golang-github-grpc-ecosystem-grpc-gateway-dev
if [ "${#missing[@]}" != 0 ]; then
  {
    echo "build.sh: missing, from Debian (bookworm) packages:"
    printf '  %s\n' "${missing[@]}"
    echo "install them with:  apt-get install -y ${PACKAGES[*]}"
    echo "or run:             benchmarks/go/build.sh --install"
  } >&2
  exit 1
fi
if command -v protoc-gen-go >/dev/null && [ "$(command -v protoc-gen-go)" != /usr/bin/protoc-gen-go ]; then
  echo "build.sh: note: protoc-gen-go is $(command -v protoc-gen-go), not Debian's 1.3.5" >&2
fi

# httpbody.proto (imported by library.proto) is in no Debian package: googleapis-common-protos
# in the repo's .venv has it.
PYTHON=$REPO/.venv/bin/python
[ -x "$PYTHON" ] || PYTHON=python3
HTTPBODY=$("$PYTHON" -c 'import google.api.httpbody_pb2 as m, pathlib; print(pathlib.Path(m.__file__).with_suffix("").with_name("httpbody.proto"))' 2>/dev/null || true)
if [ ! -f "$HTTPBODY" ]; then
  echo "build.sh: no google/api/httpbody.proto: run scripts/setup (googleapis-common-protos)" >&2
  exit 1
fi

LIBRARY=$REPO/protos/edgedemo/library/v1/library.proto
KITCHEN=$REPO/tests/protos/edgetest/v1/kitchen.proto
INPUTS=("$HERE/build.sh" "$HERE/goupstream/main.go" "$HERE/gogateway/main.go" "$HERE/stream.proto" "$LIBRARY")
stamp=$(cat "${INPUTS[@]}" | sha256sum | cut -d' ' -f1)
if [ "$force" = 0 ] && [ -x "$OUT/bin/goupstream" ] && [ -x "$OUT/bin/gogateway" ] &&
  [ "$(cat "$OUT/inputs.sha256" 2>/dev/null)" = "$stamp" ]; then
  echo "build.sh: $OUT/bin is up to date"
  exit 0
fi
rm -f "$OUT/inputs.sha256"

# stream.proto must still be tests/protos' StreamService: the package line, the service block
# and each of its messages, byte for byte.
blocks() {  # FILE: package line, StreamService and its messages, each block whole
  awk '/^package /{print} /^(service StreamService|message (CountRequest|Tick|Number|Total|Line)) \{/{on=1}
       on{print} on && /^\}/{on=0}' "$1"
}
if ! diff <(blocks "$KITCHEN") <(blocks "$HERE/stream.proto") >/dev/null; then
  echo "build.sh: benchmarks/go/stream.proto no longer matches StreamService in" >&2
  echo "  tests/protos/edgetest/v1/kitchen.proto; copy the changed blocks over:" >&2
  diff <(blocks "$KITCHEN") <(blocks "$HERE/stream.proto") >&2 || true
  exit 1
fi

export GO111MODULE=off GOPROXY=off GOFLAGS= GOPATH="$OUT/gopath:/usr/share/gocode" \
  GOCACHE="$OUT/gocache"

# Protos, copied into OUT/proto.
rm -rf "$OUT/proto" "$OUT/gopath/src/gobench" "$OUT/gopath/pkg"
mkdir -p "$OUT/proto/google/api" "$OUT/proto/edgedemo/library/v1" "$OUT/proto/edgetest/v1"
cp "$GWAPI/annotations.proto" "$GWAPI/http.proto" "$HTTPBODY" "$OUT/proto/google/api/"
# library.proto: the repo's, less two methods and plus one binding.
#  - ImportBooks (client streaming) and Discuss (bidi) go: their rules have a path variable
#    on a client-streaming call, and protoc-gen-grpc-gateway 1.6.4 stops with "cannot use
#    path parameter in client streaming". The benchmarks call neither.
#  - GetBook gets `additional_bindings { post: "/edgedemo.library.v1.LibraryService/GetBook"
#    body: "*" }`: the route edge makes by itself with transcoding.generic_routes: all, which
#    the POST benchmark calls; grpc-gateway has no generic routes.
# Every other line (package, messages, field numbers, other rules) is unchanged.
awk '
  /^  \/\// { buf = buf $0 "\n"; next }
  /^  rpc (ImportBooks|Discuss)\(/ { buf = ""; skip = 1; next }
  skip { if ($0 == "  }") { skip = 0; dropblank = 1 }; next }
  { if (dropblank && $0 == "") { dropblank = 0; next }
    dropblank = 0; printf "%s", buf; buf = ""; print }
' "$LIBRARY" |
  sed 's#^      get: "/v1/{name=shelves/\*/books/\*}"$#&\n      additional_bindings { post: "/edgedemo.library.v1.LibraryService/GetBook" body: "*" }#' \
    >"$OUT/proto/edgedemo/library/v1/library.proto"
if ! grep -q 'post: "/edgedemo.library.v1.LibraryService/GetBook"' \
  "$OUT/proto/edgedemo/library/v1/library.proto"; then
  echo "build.sh: GetBook's rule in $LIBRARY changed; the POST binding was not added" >&2
  exit 1
fi
cp "$HERE/stream.proto" "$OUT/proto/edgetest/v1/stream.proto"

# Generate with the golang/protobuf 1.3 API (what grpc-gateway 1.6.4 is built on). The M
# options point the well-known types at golang/protobuf 1.3's and genproto's Go packages
# (protoc 3.21's own .proto files name the APIv2 ones) and give the two protos import paths.
MAP=Mgoogle/protobuf/timestamp.proto=github.com/golang/protobuf/ptypes/timestamp
MAP=$MAP,Mgoogle/protobuf/empty.proto=github.com/golang/protobuf/ptypes/empty
MAP=$MAP,Mgoogle/protobuf/field_mask.proto=google.golang.org/genproto/protobuf/field_mask
MAP=$MAP,Medgedemo/library/v1/library.proto=gobench/gen/edgedemo/library/v1
MAP=$MAP,Medgetest/v1/stream.proto=gobench/gen/edgetest/v1
mkdir -p "$OUT/gopath/src/gobench/gen" "$OUT/gopath/src/gobench/cmd" "$OUT/bin"
cp -r "$HERE/goupstream" "$HERE/gogateway" "$OUT/gopath/src/gobench/cmd/"
for p in edgedemo/library/v1/library.proto edgetest/v1/stream.proto; do
  protoc -I "$OUT/proto" -I /usr/include \
    --go_out=plugins=grpc,paths=source_relative,$MAP:"$OUT/gopath/src/gobench/gen" \
    --grpc-gateway_out=logtostderr=true,$MAP:"$OUT/gopath/src" \
    "$OUT/proto/$p"
done

go build -o "$OUT/bin/goupstream" gobench/cmd/goupstream
go build -o "$OUT/bin/gogateway" gobench/cmd/gogateway
echo "$stamp" >"$OUT/inputs.sha256"
echo "build.sh: built $OUT/bin/goupstream and $OUT/bin/gogateway ($(go version))"

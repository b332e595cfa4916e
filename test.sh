#!/usr/bin/env bash
# Builds replds and runs a local three-server cluster in the foreground:
# gRPC on 12100, 12200 and 12300 (membership on the next port up), data in
# ./.test-cluster. Logs are shown here; Enter or Ctrl-C stops every server.
# When stdin is not a terminal, or at its end (./test.sh </dev/null, under
# nohup or a supervisor), it runs until a signal (SIGINT, SIGTERM).
#
#   ./test.sh           fresh cluster (previous data wiped)
#   ./test.sh --keep    keep the data of the previous run
#   ./test.sh --tls     mutual TLS, ACLs and encrypted membership (see below)
#
# The environment may move it: TEST_SH_PORTS (three gRPC ports, "12100
# 12200 12300"), TEST_SH_DIR (.test-cluster), TEST_SH_BIN (a replds binary
# to run instead of building bin/replds).
#
# --tls makes, once, under .test-cluster/tls/ (kept when the data is wiped;
# delete the directory to start over): a CA (ca.crt, ca.key), server
# certificates server1..server3 for the servers on 12100, 12200 and 12300,
# a client certificate with identity "client", one for "host1", a gossip
# key, and an example ACL file (acls) giving the servers "peer" and
# "client" read and write on /. Edit acls, then reload it with
# kill -HUP on the servers. The client flags to use are printed at start.
set -euo pipefail
cd "$(dirname "$0")"

keep=0
tls=0
for arg in "$@"; do
  case "$arg" in
    --keep) keep=1 ;;
    --tls) tls=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "test.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done

bin=${TEST_SH_BIN:-}
if [ -z "$bin" ]; then
  mkdir -p bin
  go build -o bin/replds ./cmd/replds
  bin=./bin/replds
fi
dir=${TEST_SH_DIR:-.test-cluster}
case "$dir" in /*) tlsdir="$dir/tls" ;; *) tlsdir="$PWD/$dir/tls" ;; esac
if [ "$keep" = 0 ]; then
  if [ "$tls" = 1 ]; then
    # Wipe the data, keep the TLS material.
    find "$dir" -mindepth 1 -maxdepth 1 ! -name tls -exec rm -rf {} + 2>/dev/null || true
  else
    rm -rf "$dir"
  fi
fi
mkdir -p "$dir"

read -r -a ports <<<"${TEST_SH_PORTS:-12100 12200 12300}"

# make_tls creates the TLS material under $tlsdir unless a previous run
# finished doing so.
make_tls() {
  if [ -f "$tlsdir/.complete" ]; then return; fi
  rm -rf "$tlsdir"
  mkdir -p "$tlsdir"
  chmod 700 "$tlsdir"
  local t="$tlsdir"
  "$bin" cert ca --cert="$t/ca.crt" --key="$t/ca.key" --cn="replds test.sh CA"
  # Server certificates name localhost, 127.0.0.1 and ::1 (the default hosts);
  # the others are client certificates (client authentication only).
  for id in server1 server2 server3 client host1; do
    kind=--client; case $id in server*) kind=--server;; esac
    "$bin" cert issue "$kind" --ca="$t/ca.crt" --ca-key="$t/ca.key" --cn="$id" \
      --cert="$t/$id.crt" --key="$t/$id.key"
  done
  "$bin" cert gossip-key --out="$t/gossip.key"
  cat > "$t/acls" <<'ACLS'
# replds ACLs: "identity path read|write" or "identity peer"; everything not
# allowed here is denied. Reload with kill -HUP on the servers.

# The servers replicate to each other.
server1 peer
server2 peer
server3 peer

# The client of test.sh may do everything.
client / write
client / read

# A host that may only pull its own subtree (certificate host1.crt):
# host1 /data/host1 read
ACLS
  touch "$t/.complete"
}

tls_flags=()
if [ "$tls" = 1 ]; then
  make_tls
fi
pids=()
stop() {
  trap - INT TERM EXIT
  echo "test.sh: stopping servers" >&2
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  # The reader of Enter lingers when the script alone is signalled.
  if [ -n "${reader:-}" ]; then kill -TERM "$reader" 2>/dev/null || true; fi
  wait 2>/dev/null || true
}
trap stop INT TERM EXIT

for i in "${!ports[@]}"; do
  port=${ports[$i]}
  peers=()
  for p in "${ports[@]}"; do
    [ "$p" = "$port" ] || peers+=("--peer=127.0.0.1:$p")
  done
  if [ "$tls" = 1 ]; then
    id="server$((i + 1))"
    tls_flags=(--tls-cert="$tlsdir/$id.crt" --tls-key="$tlsdir/$id.key" --tls-ca="$tlsdir/ca.crt"
      --acls="$tlsdir/acls" --gossip-key-file="$tlsdir/gossip.key")
  fi
  "$bin" server --addr="127.0.0.1:$port" --data-dir="$dir/$port" \
    --gossip-profile=local "${peers[@]}" ${tls_flags[@]+"${tls_flags[@]}"} \
    > >(sed -u "s/^/[$port] /") 2>&1 &
  pids+=($!)
done

cat >&2 <<MSG
test.sh: 3 servers on localhost:${ports[0]}, localhost:${ports[1]}, localhost:${ports[2]} (data in $dir)
test.sh: in another terminal:  export PATH="$PWD/bin:\$PATH"
MSG
if [ "$tls" = 1 ]; then
  client="--tls-cert=$tlsdir/client.crt --tls-key=$tlsdir/client.key --tls-ca=$tlsdir/ca.crt"
  cat >&2 <<MSG
test.sh: TLS: servers are server1, server2, server3 (ports ${ports[*]}); ACLs in $tlsdir/acls
test.sh: TLS: reload the ACLs with: kill -HUP ${pids[*]}
test.sh: TLS: client settings (identity "client"), as flags:
  $client
test.sh: TLS: or in the environment, for every command of this shell:
  export REPLDS_TLS_CERT=$tlsdir/client.crt REPLDS_TLS_KEY=$tlsdir/client.key REPLDS_TLS_CA=$tlsdir/ca.crt
test.sh: TLS: e.g.  echo hello | replds store --server=localhost:${ports[0]} $client - /data/hello
test.sh: TLS:       replds cat --server=localhost:${ports[1]} $client /data/hello
test.sh: TLS: identity "host1" (no rules until you uncomment its line in the ACLs):
  --tls-cert=$tlsdir/host1.crt --tls-key=$tlsdir/host1.key --tls-ca=$tlsdir/ca.crt
MSG
fi
# Stop on Enter, or when any server exits; at the end of stdin (not a
# terminal, or Ctrl-D) only on a signal, which the trap above handles.
# (A background job reads /dev/null unless given stdin explicitly.)
if [ -t 0 ]; then
  echo "test.sh: press Enter or Ctrl-C to stop" >&2
else
  echo "test.sh: stdin is not a terminal: running until SIGINT or SIGTERM (kill $$)" >&2
fi
exec 3<&0
{ if read -r _ <&3; then exit 0; fi; exec sleep infinity; } &
reader=$!
wait -n "${pids[@]}" "$reader" || true

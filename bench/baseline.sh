# Shared by the benchmarks: the tw of an earlier commit, built once (release,
# without libtorch) into the benchmark cache. Usage, after setting `root`:
#   . "$root/bench/baseline.sh"; old=$(baseline_tw COMMIT)
baseline_tw() {
  local commit=$1
  local cache=${XDG_CACHE_HOME:-$HOME/.cache}/tw-bench-v1
  local bin=$cache/baseline-$commit/target/release/tw
  if [ ! -x "$bin" ]; then
    local src=$cache/baseline-$commit/src
    rm -rf "$src"
    git -C "$root" worktree add --detach "$src" "$commit" >/dev/null
    (cd "$src" && CARGO_TARGET_DIR=$cache/baseline-$commit/target \
       cargo build --release --locked --no-default-features --bin tw >&2)
    git -C "$root" worktree remove --force "$src"
  fi
  echo "$bin"
}

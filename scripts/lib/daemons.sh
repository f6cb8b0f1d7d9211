# Shell functions shared by the scripts that run test peers in the background (keystone.sh,
# swift.sh). Source it; it defines functions only.

# Closes every descriptor above 2 in the current (sub)shell, so that a server started from it
# holds no lock or pipe of the script that started it (a CI runner waits for its pipes).
close_inherited_fds() {
  local path fd
  for path in /proc/"$BASHPID"/fd/*; do
    fd=${path##*/}
    if [ "$fd" -gt 2 ]; then exec {fd}>&-; fi
  done
}

# log_tails FILE...: the end of each existing FILE, on stderr.
log_tails() {
  local file
  for file in "$@"; do
    [ -f "$file" ] || continue
    printf -- '--- last lines of %s ---\n' "$file" >&2
    tail -n 30 "$file" >&2
  done
}

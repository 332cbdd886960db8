#!/usr/bin/env bash
# test_docs.sh - the reference material an admin gets: the man pages built from docs/man/
# (every page there and readable by man, taskmill.conf(5) naming every key of the shipped
# config, taskmill(1) and taskmillctl(8) every command their --help lists), the bash completions
# (run as bash runs them: the commands, options, values), and `cmake --install` putting pages
# and completions where man and bash-completion look.
set -euo pipefail
: "${TASKMILL_BUILD:?}" "${TASKMILL_SRC:?}"
MAN=$TASKMILL_BUILD/man
T=$(mktemp -d /tmp/taskmill-docs.XXXXXX)
trap 'rm -rf "$T"' EXIT
FAILS=0
fail() { echo "FAIL: $*" >&2; FAILS=$((FAILS + 1)); }
ok() { echo "ok: $*"; }
check() { local what=$1; shift; if "$@"; then ok "$what"; else fail "$what"; fi; }

PAGES=(taskmill.1 taskmill.conf.5 taskmillctl.8 taskmill-init.8 taskmill-queue.8 taskmill-rest.8
    taskmill-convert.8 taskmill-callback.8 taskmill-cluster.8 taskmill-node.8)
for p in "${PAGES[@]}"; do
    check "$p is built" test -s "$MAN/$p"
    # groff's man macros: every page has a NAME section naming itself.
    check "  with a .TH and a NAME line" grep -q "^\.TH \"${p%.*}\" \"${p##*.}\"" "$MAN/$p"
    check "  and man renders it" bash -c "MANWIDTH=80 man -l '$MAN/$p' 2>&1 | grep -q '^NAME'"
done

# taskmill.conf(5): every key of the shipped file (set or shown commented out), in its section.
missing=""
section=""
while IFS= read -r line; do
    case $line in
    "; Task types"*) break ;; # the examples that follow are shown as they are
    \[*\]) section=$line ;;
    [a-z]*" = "* | ";"[a-z]*" = "*)
        key=${line#;}
        key=${key%% = *}
        grep -qF "*${key//_/\\_}*" "$MAN/taskmill.conf.5.scd" || missing+=" $section$key"
        ;;
    esac
done <"$TASKMILL_SRC/conf/taskmill.conf"
check "taskmill.conf(5) names every key of conf/taskmill.conf (missing:${missing:- none})" test -z "$missing"
check "  and shows the task-type examples" grep -q "kind = exec" "$MAN/taskmill.conf.5.scd"

# The commands each tool's --help lists: in its man page and in its completion.
client_cmds=$("$TASKMILL_BUILD/taskmill" --help | sed -n '/^Commands:/,/^Options:/p' | awk '/^  [a-z]/ {print $1}')
ctl_cmds=$("$TASKMILL_BUILD/taskmillctl" --help 2>&1 | awk '/^  [a-z]/ {print $1}')
check "taskmill --help lists commands ($(echo $client_cmds))" test -n "$client_cmds"
check "taskmillctl --help lists commands ($(echo $ctl_cmds))" test -n "$ctl_cmds"
complete_words() { # SCRIPT FUNCTION WORD... : what bash would offer for the last word
    bash -c '. "$1"; f=$2; shift 2; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); "$f"; echo "${COMPREPLY[*]}"' \
        _ "$@"
}
for c in $client_cmds; do
    check "taskmill(1) describes '$c'" grep -q "^\*$c\*" "$TASKMILL_SRC/docs/man/taskmill.1.scd"
    check "  and the completion offers it" \
        grep -qw -- "$c" <<<"$(complete_words "$TASKMILL_SRC/completion/taskmill" _taskmill taskmill "")"
done
for c in $ctl_cmds; do
    check "taskmillctl(8) describes '$c'" grep -q "^\*$c\*" "$TASKMILL_SRC/docs/man/taskmillctl.8.scd"
    check "  and the completion offers it" \
        grep -qw -- "$c" <<<"$(complete_words "$TASKMILL_SRC/completion/taskmillctl" _taskmillctl taskmillctl "")"
done
check "completion: 'taskmill su' -> submit" \
    test "$(complete_words "$TASKMILL_SRC/completion/taskmill" _taskmill taskmill su)" = submit
check "completion: 'taskmill --server URL submit --pre' -> --preset" \
    test "$(complete_words "$TASKMILL_SRC/completion/taskmill" _taskmill taskmill --server http://h submit --pre)" = --preset
check "completion: 'taskmill submit --preset ve' -> veryfast veryslow" \
    test "$(complete_words "$TASKMILL_SRC/completion/taskmill" _taskmill taskmill submit --preset ve)" = "veryfast veryslow"
check "completion: 'taskmillctl list --state f' -> failed" \
    test "$(complete_words "$TASKMILL_SRC/completion/taskmillctl" _taskmillctl taskmillctl list --state f)" = failed

# cmake --install: where man and bash-completion look.
DESTDIR=$T/root cmake --install "$TASKMILL_BUILD" --prefix /usr >"$T/install.log" 2>&1 ||
    { fail "cmake --install"; cat "$T/install.log" >&2; }
for p in "${PAGES[@]}"; do
    check "installed: /usr/share/man/man${p##*.}/$p" test -s "$T/root/usr/share/man/man${p##*.}/$p"
done
for c in taskmill taskmillctl; do
    check "installed: /usr/share/bash-completion/completions/$c" \
        test -s "$T/root/usr/share/bash-completion/completions/$c"
done
check "installed: /etc/taskmill/taskmill.conf (whatever the prefix)" test -s "$T/root/etc/taskmill/taskmill.conf"
check "  and the units read that file" grep -q -- "--config /etc/taskmill/taskmill.conf" \
    "$T/root/usr/lib/systemd/system/taskmill-queue.service"

if [ $FAILS -ne 0 ]; then
    echo "test_docs.sh: $FAILS failed" >&2
    exit 1
fi
echo "test_docs.sh: all passed"

# daemon2scd.awk - the scdoc source of one daemon's man page, taskmill-NAME(8): the facts of
# daemons.txt filled into the template daemon.scd.in (the parts every daemon shares).
# Usage: awk -v name=queue -f daemon2scd.awk daemons.txt daemon.scd.in > taskmill-queue.8.scd
function put(s, key, val,    i, out) { # every @key@ in s replaced by val, literally
    out = ""
    while ((i = index(s, "@" key "@")) > 0) {
        out = out substr(s, 1, i - 1) val
        s = substr(s, i + length(key) + 2)
    }
    return out s
}
BEGIN { block = 1 }
FNR == NR {
    if (/^#/) next
    if (/^---$/) { block++; next }
    eq = index($0, "=")
    f[block, substr($0, 1, eq - 1)] = substr($0, eq + 1)
    if (substr($0, 1, eq - 1) == "NAME" && substr($0, eq + 1) == name) mine = block
    next
}
FNR == 1 && mine == "" { print "daemon2scd.awk: no daemon " name " in daemons.txt" > "/dev/stderr"; exit 1 }
{
    line = $0
    n = split("NAME SUMMARY BODY STOP HUP FILES SEEALSO DOCS", keys, " ")
    for (k = 1; k <= n; k++) line = put(line, keys[k], f[mine, keys[k]])
    if (line == "" && $0 == "@HUP@") next # no SIGHUP for this daemon
    print line
}

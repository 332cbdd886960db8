# conf2scd.awk - the scdoc source of taskmill.conf(5), made from conf/taskmill.conf at build
# time: its sections, each key with its default (or "unset" for a key shown commented out) and
# the comment above it; the task-type examples at its end as a literal block. So the man page
# and the annotated file the programs ship can never disagree.
# Usage: awk -f conf2scd.awk conf/taskmill.conf > taskmill.conf.5.scd
function esc(s) {
    gsub(/\\/, "\\\\", s)
    gsub(/\*/, "\\*", s)
    gsub(/_/, "\\_", s)
    return s
}
function flush_text() {
    if (text != "") print esc(text) "\n"
    text = ""
}
BEGIN {
    print "taskmill.conf(5)\n"
    print "# NAME\n\ntaskmill.conf - the configuration of the taskmill server, its conversion nodes and its client\n"
    print "# SYNOPSIS\n\n_/etc/taskmill/taskmill.conf_\n"
    print "# DESCRIPTION\n"
    print "One INI file for every taskmill program; each reads the keys it needs. A line is a " \
          "_[section]_, a _key = value_, or a comment starting with _;_. The file is parsed with inih.\n"
}
NR == 1 { next } # the file's own title line
types { # the task-type examples: a literal block
    if (!fenced && /^;\[/) { flush_text(); print "```"; fenced = 1 }
    if (fenced) { sub(/^;/, ""); print; next }
    sub(/^; ?/, ""); text = text (text == "" ? "" : " ") $0; next
}
/^; Task types/ { flush_text(); print "# TASK TYPES\n"; types = 1; sub(/^; /, ""); text = $0; next }
/^\[/ { flush_text(); if (!sections++) print "# SECTIONS\n"; print "## " $0 "\n"; next }
/^;[a-z_.]+ = / || /^[a-z_.]+ = / {
    commented = /^;/
    line = $0; sub(/^;/, "", line)
    key = line; sub(/ = .*/, "", key)
    value = line; sub(/^[^=]* = /, "", value)
    if (commented) print "*" esc(key) "* (unset by default; for example: " esc(value) ")"
    else print "*" esc(key) "* = " esc(value)
    if (text != "") print "\t" esc(text)
    print ""
    text = ""
    next
}
/^;/ { sub(/^; ?/, ""); text = text (text == "" ? "" : " ") $0; next }
/^$/ { flush_text(); next }
END {
    flush_text()
    if (fenced) print "```\n"
    print "# SEE ALSO\n\n*taskmill*(1), *taskmillctl*(8), *taskmill-rest*(8), *taskmill-queue*(8), " \
          "*taskmill-convert*(8), *taskmill-callback*(8), *taskmill-init*(8), *taskmill-cluster*(8), " \
          "*taskmill-node*(8)"
}

#!/usr/bin/env bash
# Installed like a Debian tool: `cmake --install` into a DESTDIR puts the binary, both man
# pages, bash completion and the docs under the prefix, and the installed binary runs;
# the man pages render without warnings and name every option each command's help lists;
# completion offers each command's own options; `cpack -G DEB` builds a package whose
# dependencies are runtime libraries only.
. "$(dirname "$0")/../lib.sh"
: "${BUILD_DIR:?}" "${SOURCE_DIR:?}"

R=$T/root
run env DESTDIR="$R" cmake --install "$BUILD_DIR" --prefix /usr; expect_rc 0 "cmake --install"
for f in usr/bin/seedbatch usr/share/man/man1/seedbatch.1 usr/share/man/man5/seedbatch-manifest.5 \
         usr/share/bash-completion/completions/seedbatch usr/share/doc/seedbatch/README.md \
         usr/share/doc/seedbatch/operations.md usr/share/doc/seedbatch/examples/demo.yaml; do
    [ -f "$R/$f" ] && pass || fail "not installed: /$f"
done
[ -x "$R/usr/bin/seedbatch" ] && pass || fail "the installed binary is not executable"
run "$R/usr/bin/seedbatch" --version; expect_rc 0 "installed --version"
expect_in "$T/out" "seedbatch 0.1.0" "installed --version text"
cp -r "$R/usr/share/doc/seedbatch/examples" "$T/ex"
run "$R/usr/bin/seedbatch" validate "$T/ex/demo.yaml"; expect_rc 0 "installed binary validates the installed example"
expect_in "$T/out" "$T/ex/demo.yaml: ok: 4 jobs" "installed validate output"

# The man pages: rendered by man(1) with groff's warnings on, none printed.
for page in man1/seedbatch.1 man5/seedbatch-manifest.5; do
    LC_ALL=C.UTF-8 MANWIDTH=80 man --warnings -E UTF-8 -l "$R/usr/share/man/$page" >"$T/$(basename $page).txt" 2>"$T/manerr"
    expect_eq "$?" 0 "man -l $page"
    expect_eq "$(cat "$T/manerr")" "" "man -l $page: no warnings"
done
# Every option of every command's help is in seedbatch(1), and every exit code.
man_text=$T/seedbatch.1.txt
sed -i 's/‐//g; s/[[:space:]]\+/ /g' "$man_text"   # hyphenation and line breaks undone
for c in run validate status cancel results; do
    "$SEEDBATCH" $c --help > "$T/help.$c"
    for o in $(grep -o -- '--[a-z-]*' "$T/help.$c" | sort -u); do
        grep -qF -- "$o" "$man_text" && pass || fail "seedbatch(1) does not mention $o (of $c)"
    done
done
for code in 0 1 2 3 4 75; do grep -qE "^ *$code *$|^ $code " "$T/seedbatch.1.txt" && pass || fail "seedbatch(1): exit code $code"; done
for v in ATLASCLOUD_API_KEY RUNCOMFY_API_TOKEN ATLASCLOUD_BASE_URL RUNCOMFY_BASE_URL state.db results.jsonl; do
    expect_in "$man_text" "$v" "seedbatch(1) names $v"
done

# Completion: the commands, then each command's own options and no other's.
complete_words() { # complete_words WORD...: the completions offered for the last word
    bash -c '. /usr/share/bash-completion/bash_completion; . "$1"; shift
             COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); COMP_LINE="$*"; COMP_POINT=${#COMP_LINE}
             _seedbatch; printf "%s\n" "${COMPREPLY[@]}"' _ "$R/usr/share/bash-completion/completions/seedbatch" "$@"
}
expect_eq "$(complete_words seedbatch ru)" "run" "completion: ru -> run"
expect_eq "$(complete_words seedbatch st | sort | tr '\n' ' ')" "status " "completion: st -> status"
for c in run validate status cancel results; do
    complete_words seedbatch $c -- > "$T/comp.$c"
    for o in $(grep -o -- '--[a-z-]*' "$T/help.$c" | sort -u); do
        grep -qxF -- "$o" "$T/comp.$c" && pass || fail "completion of '$c --' lacks $o"
    done
    for o in $(grep -x -- '--[a-z-]*' "$T/comp.$c"); do
        grep -qF -- "$o" "$T/help.$c" && pass || fail "completion of '$c --' offers $o, not an option of $c"
    done
done
expect_eq "$(complete_words seedbatch run --progress a | tr '\n' ' ')" "auto always " "completion: --progress values"

# The package: built from the same install; its dependencies are the runtime libraries.
run cpack --config "$BUILD_DIR/CPackConfig.cmake" -G DEB -B "$T/pkg"; expect_rc 0 "cpack -G DEB"
deb=$(ls "$T"/pkg/seedbatch_*.deb 2>/dev/null | head -1)
[ -n "$deb" ] && pass || fail "no .deb built"
if [ -n "$deb" ]; then
    deps=$(dpkg-deb -f "$deb" Depends)
    for lib in libuv1 libcurl4 libcjson1 libyaml-0-2 libsqlite3-0 libssl3 libwebp7 libtiff6 libcsv3; do
        case "$deps" in *"$lib"*) pass ;; *) fail "the package does not depend on $lib: $deps" ;; esac
    done
    case "$deps" in *-dev*|*microhttpd*|*python*|*valgrind*) fail "the package depends on a build or test tool: $deps" ;; *) pass ;; esac
    dpkg-deb -c "$deb" > "$T/contents"
    for f in ./usr/bin/seedbatch ./usr/share/man/man1/seedbatch.1 ./usr/share/bash-completion/completions/seedbatch; do
        grep -q " $f\$" "$T/contents" && pass || fail "the package lacks $f"
    done
    grep -q "mockapi\|gen_image\|store_tool" "$T/contents" && fail "the package holds a test program" || pass
fi

echo "test_install.sh: $PASSES passed, $FAILS failed"
[ "$FAILS" -eq 0 ]

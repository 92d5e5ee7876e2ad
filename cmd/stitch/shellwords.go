package main

import (
	"fmt"
	"strings"
)

// splitWords splits s into words as a POSIX shell does, without expanding
// anything: blanks (space, tab, newline) separate words; '…' keeps its
// contents as written; "…" keeps its contents except that a backslash before
// ", \, $ or ` stands for that character (and before a newline joins the
// lines); a backslash outside quotes stands for the next character (before a
// newline: nothing). Quotes may make part of a word ('a b'c is "a bc") or an
// empty word (a pair of quotes with nothing between). $, `, globs and ~ stay as written: the words are arguments,
// not a command line. An unterminated quote or a trailing backslash is an
// error saying where it starts.
func splitWords(s string) ([]string, error) {
	var (
		words  []string
		word   strings.Builder
		inWord bool // a word has started (possibly an empty one, from quotes)
	)
	end := func() {
		if inWord {
			words = append(words, word.String())
			word.Reset()
			inWord = false
		}
	}
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		switch r := rs[i]; r {
		case ' ', '\t', '\n':
			end()
		case '\\':
			if i+1 == len(rs) {
				return nil, fmt.Errorf("a backslash at the end of %q escapes nothing", s)
			}
			i++
			if rs[i] != '\n' {
				word.WriteRune(rs[i])
				inWord = true
			}
		case '\'':
			j := i + 1
			for j < len(rs) && rs[j] != '\'' {
				j++
			}
			if j == len(rs) {
				return nil, fmt.Errorf("the single quote at character %d of %q is not closed", i+1, s)
			}
			word.WriteString(string(rs[i+1 : j]))
			inWord, i = true, j
		case '"':
			j := i + 1
			for ; j < len(rs) && rs[j] != '"'; j++ {
				if rs[j] == '\\' && j+1 < len(rs) && strings.ContainsRune("\"\\$`\n", rs[j+1]) {
					j++
					if rs[j] != '\n' {
						word.WriteRune(rs[j])
					}
					continue
				}
				word.WriteRune(rs[j])
			}
			if j == len(rs) {
				return nil, fmt.Errorf("the double quote at character %d of %q is not closed", i+1, s)
			}
			inWord, i = true, j
		default:
			word.WriteRune(r)
			inWord = true
		}
	}
	end()
	return words, nil
}

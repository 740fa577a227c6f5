package main

import "strings"

func Shout(s string) string {
	<CURSOR>
}

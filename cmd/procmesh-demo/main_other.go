//go:build !linux

package main

import (
	"errors"
	"io"
)

func runRole(string) error { return errors.New("the demo runs on Linux only") }

func run(io.Writer, string, bool) error { return errors.New("the demo runs on Linux only") }

// Command prune removes SPIRE's built-in plugins that procmesh's tests do not
// use from a copy of SPIRE's source, so that building the test binaries
// does not compile the cloud SDKs (AWS, GCP, Azure, Kubernetes, Vault,
// Docker) those plugins import: about half of the packages of a SPIRE
// build.
//
// It edits the catalogs in place (pkg/server/catalog and pkg/agent/catalog
// under dir): every `<plugin>.BuiltIn()` in a BuiltIns list whose package is
// not kept is dropped, and its import with it. What the tests run is still
// SPIRE's own server and agent, with the plugins they configure:
//
//	go run ./prune -keep server/keymanager/disk,agent/nodeattestor/jointoken,... dir
//
// A kept plugin that the catalogs do not list is an error (a typo, or a
// SPIRE version that renamed it), and so is a catalog file it cannot parse.
package main

import (
	"bytes"
	"flag"
	"fmt"
	"go/ast"
	"go/format"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
)

const pluginPrefix = "github.com/spiffe/spire/pkg/"

func main() {
	keepFlag := flag.String("keep", "", "comma-separated plugins to keep, as side/type/name (server/keymanager/disk)")
	flag.Parse()
	if flag.NArg() != 1 || *keepFlag == "" {
		fmt.Fprintln(os.Stderr, "usage: prune -keep side/type/name,... <spire source dir>")
		os.Exit(2)
	}
	keep := map[string]bool{}
	for _, k := range strings.Split(*keepFlag, ",") {
		side, rest, ok := strings.Cut(strings.TrimSpace(k), "/")
		if !ok || (side != "server" && side != "agent") || strings.Count(rest, "/") != 1 {
			fail("prune: -keep %q: want side/type/name, side server or agent", k)
		}
		keep[pluginPrefix+side+"/plugin/"+rest] = true
	}
	seen := map[string]bool{}
	var dropped []string
	for _, side := range []string{"server", "agent"} {
		dir := filepath.Join(flag.Arg(0), "pkg", side, "catalog")
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			fail("prune: no catalog in %s: is %s SPIRE's source?", dir, flag.Arg(0))
		}
		for _, f := range files {
			if strings.HasSuffix(f, "_test.go") {
				continue
			}
			d, err := pruneFile(f, keep, seen)
			if err != nil {
				fail("prune: %s: %v", f, err)
			}
			dropped = append(dropped, d...)
		}
	}
	for k := range keep {
		if !seen[k] {
			fail("prune: -keep names %s, which no catalog lists as a built-in", strings.TrimPrefix(k, pluginPrefix))
		}
	}
	sort.Strings(dropped)
	fmt.Fprintf(os.Stderr, "prune: left out %d built-in plugins: %s\n", len(dropped), strings.Join(dropped, " "))
}

// pruneFile drops the BuiltIn() calls of plugins not in keep from the file's
// composite literals, and the imports nothing uses any more. It records in
// seen the kept plugins it found, and returns the dropped ones.
func pruneFile(path string, keep, seen map[string]bool) ([]string, error) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, path, nil, parser.ParseComments)
	if err != nil {
		return nil, err
	}
	// The plugin imports of the file, by the name the file uses.
	plugins := map[string]string{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if !strings.HasPrefix(p, pluginPrefix) || !strings.Contains(p, "/plugin/") {
			continue
		}
		name := filepath.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		plugins[name] = p
	}
	var dropped []string
	ast.Inspect(f, func(n ast.Node) bool {
		lit, ok := n.(*ast.CompositeLit)
		if !ok {
			return true
		}
		kept := lit.Elts[:0]
		for _, e := range lit.Elts {
			if p := builtIn(e, plugins); p != "" {
				if !keep[p] {
					dropped = append(dropped, strings.TrimPrefix(p, pluginPrefix))
					continue
				}
				seen[p] = true
			}
			kept = append(kept, e)
		}
		lit.Elts = kept
		return true
	})
	if len(dropped) == 0 {
		return nil, nil
	}
	// Imports of plugins whose name no selector uses any more.
	used := map[string]bool{}
	ast.Inspect(f, func(n ast.Node) bool {
		if sel, ok := n.(*ast.SelectorExpr); ok {
			if id, ok := sel.X.(*ast.Ident); ok {
				used[id.Name] = true
			}
		}
		return true
	})
	for name, p := range plugins {
		if !used[name] {
			if !deleteImport(f, p) {
				return nil, fmt.Errorf("cannot remove the import of %s", p)
			}
		}
	}
	var buf bytes.Buffer
	if err := format.Node(&buf, fset, f); err != nil {
		return nil, err
	}
	return dropped, os.WriteFile(path, buf.Bytes(), 0o644)
}

// builtIn is the plugin import path of e when e is `<plugin>.BuiltIn()`.
func builtIn(e ast.Expr, plugins map[string]string) string {
	call, ok := e.(*ast.CallExpr)
	if !ok || len(call.Args) != 0 {
		return ""
	}
	sel, ok := call.Fun.(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "BuiltIn" {
		return ""
	}
	id, ok := sel.X.(*ast.Ident)
	if !ok {
		return ""
	}
	return plugins[id.Name]
}

// deleteImport removes the import of path from f.
func deleteImport(f *ast.File, path string) bool {
	quoted := strconv.Quote(path)
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.IMPORT {
			continue
		}
		for i, s := range gd.Specs {
			if s.(*ast.ImportSpec).Path.Value == quoted {
				gd.Specs = append(gd.Specs[:i], gd.Specs[i+1:]...)
				for j, imp := range f.Imports {
					if imp.Path.Value == quoted {
						f.Imports = append(f.Imports[:j], f.Imports[j+1:]...)
						break
					}
				}
				return true
			}
		}
	}
	return false
}

func fail(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
	os.Exit(1)
}

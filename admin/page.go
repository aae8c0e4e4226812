package admin

import (
	_ "embed"
	"html/template"
	"time"
)

//go:embed page.html
var pageHTML string

//go:embed explain.html
var explainHTML string

var funcs = template.FuncMap{
	"ago": func(now, t time.Time) string { return now.Sub(t).Round(time.Second).String() + " ago" },
	"left": func(now time.Time, t *time.Time) string {
		if t == nil {
			return "no SVID held"
		}
		d := t.Sub(now).Round(time.Second)
		if d <= 0 {
			return "expired " + (-d).String() + " ago"
		}
		return "in " + d.String()
	},
	"expired": func(now time.Time, t *time.Time) bool { return t != nil && !t.After(now) },
	"utc":     func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
}

var (
	pageTemplate    = template.Must(template.New("page").Funcs(funcs).Parse(pageHTML))
	explainTemplate = template.Must(template.New("explain").Funcs(funcs).Parse(explainHTML))
)

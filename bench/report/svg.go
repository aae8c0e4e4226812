package report

import (
	"fmt"
	"html"
	"math"
	"strings"
)

var barColors = map[string]string{
	Procmesh: "#1f6feb",
	HAProxy:  "#8250df",
	Nginx:    "#1a7f37",
	Envoy:    "#bf8700",
	Caddy:    "#cf222e",
	Direct:   "#57606a",
}

func barColor(name string) string {
	if c, ok := barColors[name]; ok {
		return c
	}
	if strings.HasPrefix(name, Procmesh) {
		return "#54aeff"
	}
	return "#999999"
}

// SVG draws a scenario as horizontal bars, one group per metric: the bar is
// the median over trials, the whisker spans min to max. Contestants that
// could not produce a figure are listed with the reason's first words.
func (s *Scenario) SVG() string {
	const (
		width   = 820
		labelW  = 190
		valueW  = 150
		barH    = 16
		gap     = 6
		titleH  = 26
		groupGp = 14
	)
	plotW := float64(width - labelW - valueW - 20)
	cols := s.columns()
	height := 40
	for range s.Metrics {
		height += titleH + len(cols)*(barH+gap) + groupGp
	}
	var b strings.Builder
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" font-family="sans-serif" font-size="12">`+"\n", width, height, width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="#ffffff"/>`+"\n")
	fmt.Fprintf(&b, `<text x="10" y="24" font-size="16" font-weight="bold">%s</text>`+"\n", html.EscapeString(s.Title))
	y := 40
	for _, m := range s.Metrics {
		arrow := "higher is better"
		if m.Better == "lower" {
			arrow = "lower is better"
		}
		fmt.Fprintf(&b, `<text x="10" y="%d" font-weight="bold">%s, %s (%s)</text>`+"\n", y+16, html.EscapeString(m.Title), html.EscapeString(m.Unit), arrow)
		y += titleH
		lo, hi := 0.0, 0.0
		for _, r := range m.Rows {
			if r.Summary != nil {
				lo = math.Min(lo, r.Summary.Min)
				hi = math.Max(hi, r.Summary.Max)
			}
		}
		if hi == lo {
			hi = lo + 1
		}
		x := func(v float64) float64 { return float64(labelW) + (v-lo)/(hi-lo)*plotW }
		for _, c := range cols {
			r := findRow(m, c)
			fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", labelW-8, y+barH-3, html.EscapeString(Display(c)))
			switch {
			case r == nil:
			case r.Summary == nil:
				why := r.NA
				if len(why) > 70 {
					why = why[:67] + "..."
				}
				fmt.Fprintf(&b, `<text x="%d" y="%d" fill="#57606a" font-style="italic">n/a: %s</text>`+"\n", labelW+4, y+barH-3, html.EscapeString(why))
			default:
				x0, x1 := x(0), x(r.Summary.Median)
				if x1 < x0 {
					x0, x1 = x1, x0
				}
				fmt.Fprintf(&b, `<rect x="%.1f" y="%d" width="%.1f" height="%d" fill="%s"/>`+"\n", x0, y, math.Max(x1-x0, 1), barH, barColor(c))
				wy := y + barH/2
				fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#24292f" stroke-width="1.5"/>`+"\n", x(r.Summary.Min), wy, x(r.Summary.Max), wy)
				for _, v := range []float64{r.Summary.Min, r.Summary.Max} {
					fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#24292f" stroke-width="1.5"/>`+"\n", x(v), y+3, x(v), y+barH-3)
				}
				fmt.Fprintf(&b, `<text x="%d" y="%d">%s</text>`+"\n", width-valueW-10+4, y+barH-3, html.EscapeString(cell(r.Summary, m.Unit)))
			}
			y += barH + gap
		}
		if lo < 0 {
			fmt.Fprintf(&b, `<line x1="%.1f" y1="%d" x2="%.1f" y2="%d" stroke="#8c959f" stroke-dasharray="3,3"/>`+"\n", x(0), y-len(cols)*(barH+gap), x(0), y)
		}
		y += groupGp
	}
	b.WriteString("</svg>\n")
	return b.String()
}

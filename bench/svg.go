package main

import (
	"fmt"
	"html"
	"math"
	"slices"
	"strings"
)

// Chart geometry: two panels side by side.
const (
	panelW, panelH = 460.0, 350.0
	marginL        = 60.0
	marginR        = 20.0
	marginT        = 40.0
	marginB        = 80.0
)

// svg draws the latency distribution (CDF, log time axis) and the bytes
// per idle sync round against the store size, with the targets.
func (r *results) svg() []byte {
	var sb strings.Builder
	fmt.Fprintf(&sb, `<svg xmlns="http://www.w3.org/2000/svg" width="%.0f" height="%.0f" font-family="sans-serif" font-size="12">`+"\n", 2*panelW, panelH)
	sb.WriteString(`<rect width="100%" height="100%" fill="white"/>` + "\n")
	r.latencyPanel(&sb, 0)
	r.idlePanel(&sb, panelW)
	sb.WriteString("</svg>\n")
	return []byte(sb.String())
}

// axes maps data to pixels inside one panel.
type axes struct {
	x0, y0, w, h           float64 // plot area
	xmin, xmax, ymin, ymax float64
	xlog                   bool
}

func (a axes) px(x float64) float64 {
	if a.xlog {
		return a.x0 + (math.Log10(x)-math.Log10(a.xmin))/(math.Log10(a.xmax)-math.Log10(a.xmin))*a.w
	}
	return a.x0 + (x-a.xmin)/(a.xmax-a.xmin)*a.w
}

func (a axes) py(y float64) float64 {
	return a.y0 + a.h - (y-a.ymin)/(a.ymax-a.ymin)*a.h
}

func newAxes(left float64, xmin, xmax, ymin, ymax float64, xlog bool) axes {
	return axes{x0: left + marginL, y0: marginT, w: panelW - marginL - marginR, h: panelH - marginT - marginB,
		xmin: xmin, xmax: xmax, ymin: ymin, ymax: ymax, xlog: xlog}
}

func (a axes) frame(sb *strings.Builder, title, xlabel, ylabel string, xticks, yticks []float64, xfmt, yfmt func(float64) string) {
	fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" font-size="14" font-weight="bold">%s</text>`+"\n", a.x0-marginL+10, 22.0, html.EscapeString(title))
	fmt.Fprintf(sb, `<rect x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="none" stroke="#888"/>`+"\n", a.x0, a.y0, a.w, a.h)
	for _, t := range xticks {
		x := a.px(t)
		fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", x, a.y0, x, a.y0+a.h)
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", x, a.y0+a.h+16, xfmt(t))
	}
	for _, t := range yticks {
		y := a.py(t)
		fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="#eee"/>`+"\n", a.x0, y, a.x0+a.w, y)
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="end">%s</text>`+"\n", a.x0-6, y+4, yfmt(t))
	}
	fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%s</text>`+"\n", a.x0+a.w/2, a.y0+a.h+36, html.EscapeString(xlabel))
	fmt.Fprintf(sb, `<text transform="translate(%.1f,%.1f) rotate(-90)" text-anchor="middle">%s</text>`+"\n", a.x0-44, a.y0+a.h/2, html.EscapeString(ylabel))
}

func (a axes) polyline(sb *strings.Builder, xs, ys []float64, color string, width float64, dash string) {
	var pts []string
	for i := range xs {
		pts = append(pts, fmt.Sprintf("%.1f,%.1f", a.px(xs[i]), a.py(ys[i])))
	}
	extra := ""
	if dash != "" {
		extra = fmt.Sprintf(` stroke-dasharray="%s"`, dash)
	}
	fmt.Fprintf(sb, `<polyline points="%s" fill="none" stroke="%s" stroke-width="%.1f"%s/>`+"\n", strings.Join(pts, " "), color, width, extra)
}

func legend(sb *strings.Builder, x, y float64, color, label string) {
	fmt.Fprintf(sb, `<line x1="%.1f" y1="%.1f" x2="%.1f" y2="%.1f" stroke="%s" stroke-width="2"/>`+"\n", x, y-4, x+18, y-4, color)
	fmt.Fprintf(sb, `<text x="%.1f" y="%.1f">%s</text>`+"\n", x+24, y, html.EscapeString(label))
}

const (
	colorReplds = "#1f77b4"
	colorEtcd   = "#ff7f0e"
	colorTarget = "#d62728"
)

// latencyPanel draws the CDF of write-to-pull (and etcd write-to-watch)
// latencies.
func (r *results) latencyPanel(sb *strings.Builder, left float64) {
	type series struct {
		label, color string
		ms           []float64
	}
	var ss []series
	if d := r.Latency.Replds; d != nil && len(d.MS) > 0 {
		ss = append(ss, series{"replds: write s1 -> file renamed by pull on s3", colorReplds, d.MS})
	}
	if d := r.Latency.Etcd; d != nil && len(d.MS) > 0 {
		ss = append(ss, series{"etcd: put on member 1 -> watch event on member 3", colorEtcd, d.MS})
	}
	lo, hi := 0.1, 100.0
	for _, s := range ss {
		lo = math.Min(lo, s.ms[0])
		hi = math.Max(hi, s.ms[len(s.ms)-1])
	}
	lo = math.Pow(10, math.Floor(math.Log10(math.Max(lo, 0.01))))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	a := newAxes(left, lo, hi, 0, 1, true)
	var xt []float64
	for t := lo; t <= hi*1.001; t *= 10 {
		xt = append(xt, t)
	}
	a.frame(sb, "Write-to-mirror latency (CDF)", "latency (ms, log scale)", "fraction of writes",
		xt, []float64{0, 0.25, 0.5, 0.75, 0.9, 1},
		func(v float64) string { return fmt.Sprintf("%g", v) },
		func(v float64) string { return fmt.Sprintf("%g", v) })
	if len(ss) == 0 {
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">not measured</text>`+"\n", a.x0+a.w/2, a.y0+a.h/2)
	}
	for _, s := range ss {
		var xs, ys []float64
		for i, v := range s.ms {
			xs = append(xs, math.Max(v, lo))
			ys = append(ys, float64(i+1)/float64(len(s.ms)))
		}
		a.polyline(sb, xs, ys, s.color, 2, "")
	}
	// Targets: p50 < 5 ms, p99 < 20 ms.
	for _, t := range [][2]float64{{5, 0.5}, {20, 0.99}} {
		x, y := a.px(t[0]), a.py(t[1])
		fmt.Fprintf(sb, `<path d="M%.1f %.1fL%.1f %.1fM%.1f %.1fL%.1f %.1f" stroke="%s" stroke-width="2"/>`+"\n",
			x-5, y-5, x+5, y+5, x-5, y+5, x+5, y-5, colorTarget)
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" fill="%s" text-anchor="end">target p%g &lt; %g ms</text>`+"\n", x-8, y+4, colorTarget, t[1]*100, t[0])
	}
	// Below the axis: the curves may cross any part of the plot.
	y := a.y0 + a.h + 56
	for _, s := range ss {
		legend(sb, a.x0, y, s.color, s.label)
		y += 16
	}
}

// idlePanel draws bytes per idle sync round against the store size.
func (r *results) idlePanel(sb *strings.Builder, left float64) {
	idle := slices.Clone(r.Idle)
	slices.SortFunc(idle, func(a, b idleResult) int { return a.Nodes - b.Nodes })
	lo, hi := 1000.0, 1000000.0
	ymax := 1280.0
	for _, p := range idle {
		lo = math.Min(lo, float64(p.Nodes))
		hi = math.Max(hi, float64(p.Nodes))
		ymax = math.Max(ymax, p.BytesPerRound*1.15)
	}
	lo = math.Pow(10, math.Floor(math.Log10(lo)))
	hi = math.Pow(10, math.Ceil(math.Log10(hi)))
	ystep := 256.0
	if ymax > 2560 {
		ystep = math.Pow(10, math.Floor(math.Log10(ymax/2)))
	}
	ymax = math.Ceil(ymax/ystep) * ystep
	a := newAxes(left, lo, hi, 0, ymax, true)
	var xt, yt []float64
	for t := lo; t <= hi*1.001; t *= 10 {
		xt = append(xt, t)
	}
	for t := 0.0; t <= ymax; t += ystep {
		yt = append(yt, t)
	}
	a.frame(sb, "Bytes between servers per idle sync round", "nodes in the store (log scale)", "bytes per round",
		xt, yt, func(v float64) string { return count(int(v)) }, func(v float64) string { return fmt.Sprintf("%.0f", v) })
	// Target: under 1 KiB whatever the size.
	a.polyline(sb, []float64{lo, hi}, []float64{1024, 1024}, colorTarget, 1.5, "6 4")
	fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" fill="%s" text-anchor="end">target &lt; 1 KiB</text>`+"\n", a.x0+a.w-6, a.py(1024)-6, colorTarget)
	if len(idle) == 0 {
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">not measured</text>`+"\n", a.x0+a.w/2, a.y0+a.h/2)
		return
	}
	var xs, ys []float64
	for _, p := range idle {
		xs = append(xs, float64(p.Nodes))
		ys = append(ys, p.BytesPerRound)
	}
	a.polyline(sb, xs, ys, colorReplds, 2, "")
	for i := range xs {
		fmt.Fprintf(sb, `<circle cx="%.1f" cy="%.1f" r="4" fill="%s"/>`+"\n", a.px(xs[i]), a.py(ys[i]), colorReplds)
		fmt.Fprintf(sb, `<text x="%.1f" y="%.1f" text-anchor="middle">%.0f B</text>`+"\n", a.px(xs[i]), a.py(ys[i])-10, ys[i])
	}
	legend(sb, a.x0, a.y0+a.h+56, colorReplds, "replds, 3 servers: bytes at the proxies / Sync RPCs")
}

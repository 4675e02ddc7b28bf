package main

import (
	"encoding/xml"
	"errors"
	"io"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// killRun is a kill failover as the lab shows it: writes stop at the
// fault, db2 takes the VIP at 1.1 s, is writable at 1.2 s, and the writes
// come back; db1 returns as a standby.
func killRun() timeline {
	tl := timeline{Fault: "kill", Desc: "kill -9 mysqld on the VIP holder", From: "db1", To: "db2",
		Window: 1.25, VIPGap: 1.25, ProxyGap: 1.19, GapStart: 0.02, GapKnown: true, Start: -1.5, End: 9}
	for t := -1.4; t < 3.3; t += 0.1 {
		v := 160.0
		if t > 0 && t < 1.3 {
			v = 0
		}
		tl.Rates = append(tl.Rates, rate{From: t - 0.1, To: t, VIP: v, Proxy: v * 0.95})
	}
	for t := -1.5; t < 9; t += 0.1 {
		s := nodeState{T: t, Holder: "db1",
			Keepalived: map[string]string{"db1": "MASTER", "db2": "BACKUP"},
			ReadOnly:   map[string]string{"db1": "OFF", "db2": "ON"}}
		switch {
		case t >= 4:
			s.Holder, s.Keepalived["db1"], s.Keepalived["db2"], s.ReadOnly["db1"], s.ReadOnly["db2"] = "db2", "BACKUP", "MASTER", "ON", "OFF"
		case t >= 1.2:
			s.Holder, s.Keepalived["db1"], s.Keepalived["db2"], s.ReadOnly["db1"], s.ReadOnly["db2"] = "db2", "FAULT", "MASTER", "?", "OFF"
		case t >= 1.1:
			s.Holder, s.Keepalived["db1"], s.Keepalived["db2"], s.ReadOnly["db1"] = "db2", "FAULT", "MASTER", "?"
		case t >= 0.6:
			s.Holder, s.Keepalived["db1"], s.ReadOnly["db1"] = "", "FAULT", "?"
		case t >= 0:
			s.ReadOnly["db1"] = "?"
		}
		tl.States = append(tl.States, s)
	}
	tl.Marks = []mark{{0, "fault: kill"}, {1.1, "VIP on db2 +1.10s"}, {1.2, "db2 writable +1.20s"},
		{1.3, "writes on db2, both paths +1.30s"}, {3.3, "recovering db1"}, {8.9, "recovered +8.9s"}}
	return tl
}

// parse decodes doc as XML and returns every element's name with its
// attributes, and the character data.
func parse(t *testing.T, doc []byte) (elems []map[string]string, text string) {
	t.Helper()
	d := xml.NewDecoder(strings.NewReader(string(doc)))
	var sb strings.Builder
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("not well-formed XML: %v\n%s", err, doc)
		}
		switch tok := tok.(type) {
		case xml.StartElement:
			m := map[string]string{"": tok.Name.Local}
			for _, a := range tok.Attr {
				m[a.Name.Local] = a.Value
			}
			elems = append(elems, m)
		case xml.CharData:
			sb.Write(tok)
			sb.WriteByte('\n')
		}
	}
	return elems, sb.String()
}

var number = regexp.MustCompile(`-?[0-9.]+|NaN|Inf`)

// checkSizes fails on a NaN, an infinity or a negative width or height,
// and on coordinates far outside the picture.
func checkSizes(t *testing.T, elems []map[string]string) {
	t.Helper()
	for _, e := range elems {
		for _, k := range []string{"x", "y", "x1", "x2", "y1", "y2", "width", "height", "points"} {
			for _, s := range number.FindAllString(e[k], -1) {
				v, err := strconv.ParseFloat(s, 64)
				if err != nil || v != v {
					t.Errorf("<%s %s=%q>: not a number", e[""], k, e[k])
					continue
				}
				if (k == "width" || k == "height") && v < 0 {
					t.Errorf("<%s %s=%q>: negative", e[""], k, e[k])
				}
				if v < -svgW || v > 2*svgW {
					t.Errorf("<%s %s=%q>: far outside the picture", e[""], k, e[k])
				}
			}
		}
	}
}

func TestSVGTimeline(t *testing.T) {
	doc := svgTimeline(killRun())
	if os.Getenv("VGLAB_SVG_OUT") != "" { // to look at it: VGLAB_SVG_OUT=/tmp/x.svg
		if err := os.WriteFile(os.Getenv("VGLAB_SVG_OUT"), doc, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	elems, text := parse(t, doc)
	checkSizes(t, elems)
	if elems[0][""] != "svg" {
		t.Errorf("root element %q, want svg", elems[0][""])
	}
	lanes := map[string]bool{}
	classes := map[string]int{}
	for _, e := range elems {
		if e["class"] == "lane" {
			lanes[e["data-lane"]] = true
		}
		classes[e["class"]]++
	}
	for _, want := range []string{"VIP holder", "db1 keepalived", "db1 read_only", "db2 keepalived", "db2 read_only"} {
		if !lanes[want] {
			t.Errorf("no lane %q (lanes %v)", want, lanes)
		}
	}
	if classes["mark"] != 6 || classes["mark-label"] != 6 || classes["rate-vip"] != 1 || classes["rate-proxy"] != 1 || classes["gap"] != 1 {
		t.Errorf("want 6 marks with their labels, one line per path and one gap; got %v", classes)
	}
	for _, want := range []string{"failover: kill", "fault: kill", "VIP on db2 +1.10s", "db2 writable +1.20s", "recovered +8.9s",
		"no writes 1.25s", "MASTER", "BACKUP", "FAULT", "writable", "read-only", "no answer", "seconds from the fault",
		"write-unavailability window 1.25s (through the VIP 1.25s, through HAProxy 1.19s)", "kill -9 mysqld on the VIP holder (db1 → db2)"} {
		if !strings.Contains(text, want) {
			t.Errorf("no text %q", want)
		}
	}
	if n := len(doc); n > 40<<10 {
		t.Errorf("%d bytes, want a small picture", n)
	}
}

// TestSVGTimelineDegenerate renders what a run that ended early leaves:
// nothing, one sample, times all equal, NaN.
func TestSVGTimelineDegenerate(t *testing.T) {
	one := timeline{Fault: "kill", Start: 0.5, End: 0.5,
		Rates:  []rate{{From: 0.5, To: 0.5, VIP: 12, Proxy: 3}},
		States: []nodeState{{T: 0.5, Holder: "db1", Keepalived: map[string]string{"db1": "MASTER"}, ReadOnly: map[string]string{}}},
		Marks:  []mark{{0.5, "fault: kill"}}}
	nan := one
	nan.Start, nan.End, nan.Window, nan.GapKnown, nan.GapStart = 0, 1, 2, true, 0/zero()
	nan.Rates = []rate{{From: 0 / zero(), To: 1 / zero(), VIP: 1 / zero(), Proxy: -1}}
	for name, tl := range map[string]timeline{"empty": {}, "one sample": one, "NaN": nan,
		"backwards": {Start: 5, End: -5, GapKnown: true, Window: 1}} {
		t.Run(name, func(t *testing.T) {
			doc := svgTimeline(tl)
			if strings.Contains(string(doc), "NaN") || strings.Contains(string(doc), "Inf") {
				t.Errorf("NaN or Inf in the picture:\n%s", doc)
			}
			elems, _ := parse(t, doc)
			checkSizes(t, elems)
		})
	}
}

func zero() float64 { return 0 }

func TestSVGTimelineEscapes(t *testing.T) {
	tl := killRun()
	tl.Fault = `<kill> & "co"`
	tl.Failed = `row 'k<1>' missing on db1 & db2`
	tl.Marks = append(tl.Marks, mark{2, "a<b>&c"})
	doc := svgTimeline(tl)
	_, text := parse(t, doc)
	for _, want := range []string{`failover: <kill> & "co"`, `VERIFICATION FAILED: row 'k<1>' missing on db1 & db2`, "a<b>&c"} {
		if !strings.Contains(text, want) {
			t.Errorf("text %q not in the decoded picture", want)
		}
	}
	if strings.Contains(string(doc), "<kill>") {
		t.Error("markup from a name reached the document unescaped")
	}
}

func TestSlug(t *testing.T) {
	for in, want := range map[string]string{"kill": "kill", "kill (semi-sync)": "kill-semi-sync", "link-cut": "link-cut"} {
		if got := slug(in); got != want {
			t.Errorf("slug(%q) = %q, want %q", in, got, want)
		}
	}
}

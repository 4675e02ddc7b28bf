package probe

import "testing"

func TestMySQLGTIDSetMissing(t *testing.T) {
	const u1, u2 = "3E11FA47-71CA-11E1-9E33-C80AA9429562", "8a94f357-aab4-11df-86ab-c80aa9429562"
	cases := []struct {
		name, have, want, missing string
	}{
		{"equal", u1 + ":1-5", u1 + ":1-5", ""},
		{"covered, case and lines differ", u1 + ":1-5,\n" + u2 + ":1-3", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5", ""},
		{"adjacent intervals merge", u1 + ":1-3:4-5", u1 + ":2-5", ""},
		{"behind", u1 + ":1-3", u1 + ":1-5", "3e11fa47-71ca-11e1-9e33-c80aa9429562:4-5"},
		{"hole", u1 + ":1-3:5-9", u1 + ":1-10", "3e11fa47-71ca-11e1-9e33-c80aa9429562:4:10"},
		{"other source missing", u1 + ":1-5", u1 + ":1-5,\n" + u2 + ":7", "8a94f357-aab4-11df-86ab-c80aa9429562:7"},
		{"tagged kept apart", u1 + ":1-5", u1 + ":1-5:ops:1-2", "3e11fa47-71ca-11e1-9e33-c80aa9429562:ops:1-2"},
		{"empty want", u1 + ":1", "", ""},
		{"empty have", "", u1 + ":1", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1"},
	}
	for _, tc := range cases {
		h, err := ParseMySQLGTIDSet(tc.have)
		if err != nil {
			t.Fatalf("%s: have: %v", tc.name, err)
		}
		w, err := ParseMySQLGTIDSet(tc.want)
		if err != nil {
			t.Fatalf("%s: want: %v", tc.name, err)
		}
		if got := w.Missing(h); got != tc.missing {
			t.Errorf("%s: missing %q, want %q", tc.name, got, tc.missing)
		}
	}
	for _, bad := range []string{"nouuid:1-5", "3e11fa47-71ca-11e1-9e33-c80aa9429562", "3e11fa47-71ca-11e1-9e33-c80aa9429562:5-1",
		"3e11fa47-71ca-11e1-9e33-c80aa9429562:0", "3e11fa47-71ca-11e1-9e33-c80aa9429562:1-x", "3e11fa47-71ca-11e1-9e33-c80aa9429562:9tag:1"} {
		if _, err := ParseMySQLGTIDSet(bad); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func FuzzParseMySQLGTIDSet(f *testing.F) {
	f.Add("3e11fa47-71ca-11e1-9e33-c80aa9429562:1-5:7,\n8a94f357-aab4-11df-86ab-c80aa9429562:t:1-3")
	f.Fuzz(func(t *testing.T, s string) {
		set, err := ParseMySQLGTIDSet(s)
		if err != nil {
			return
		}
		if m := set.Missing(set); m != "" {
			t.Fatalf("a set misses %q of itself", m)
		}
		if m := set.Missing(MySQLGTIDSet{}); m != "" {
			again, err := ParseMySQLGTIDSet(m)
			if err != nil || again.Missing(set) != "" || set.Missing(again) != "" {
				t.Fatalf("rendering %q does not parse back to the same set: %v", m, err)
			}
		}
	})
}

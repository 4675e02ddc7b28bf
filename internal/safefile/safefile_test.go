package safefile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// nobody owns the foreign files; the tests that chown need root.
const nobody = 65534

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to give a file away")
	}
}

func mk(t *testing.T, dir, name string, mode os.FileMode, body string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(body), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(p, mode); err != nil {
		t.Fatal(err)
	}
	return p
}

// within fails the test when f does not return in time: a refusal must
// never be a wait.
func within(t *testing.T, f func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- f() }()
	select {
	case err := <-done:
		return err
	case <-time.After(2 * time.Second):
		t.Fatal("blocked")
		return nil
	}
}

func TestReadTrusted(t *testing.T) {
	dir := t.TempDir()
	good := mk(t, dir, "good", 0o644, "ok")
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	big := filepath.Join(dir, "big")
	f, _ := os.Create(big)
	f.Truncate(100 << 20) // sparse: costs no disk
	f.Close()
	groupW := mk(t, dir, "groupw", 0o664, "x")
	otherW := mk(t, dir, "otherw", 0o646, "x")
	cases := []struct {
		name, path, want string
	}{
		{"regular", good, ""},
		{"fifo", fifo, "is a FIFO, not a regular file"},
		{"symlink", link, "is a symbolic link, which is not followed; name the file it points to"},
		{"device", "/dev/zero", "is a character device, not a regular file"},
		{"directory", dir, "is a directory"},
		{"too big", big, "is larger than 1 MiB"},
		{"group writable", groupW, `(mode 0664); run: chmod go-w "` + groupW + `"`},
		{"others writable", otherW, "writable by its group or others"},
	}
	if os.Geteuid() == 0 {
		foreign := mk(t, dir, "foreign", 0o644, "x")
		os.Chown(foreign, nobody, nobody)
		cases = append(cases, struct{ name, path, want string }{"foreign owner", foreign, "is owned by uid 65534, not by the user running this (uid 0); run: chown 0"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := within(t, func() error {
				data, fi, err := ReadTrusted("config", tc.path, 1<<20)
				if err == nil && (string(data) != "ok" || fi.Size() != 2) {
					t.Errorf("read %q, %v", data, fi)
				}
				return err
			})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			var se *Error
			if !errors.As(err, &se) || !strings.Contains(err.Error(), tc.want) || !strings.HasPrefix(err.Error(), "config ") {
				t.Fatalf("got %v, want a refusal containing %q", err, tc.want)
			}
		})
	}
	if _, _, err := ReadTrusted("config", filepath.Join(dir, "missing"), 10); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("missing file: %v", err)
	}
}

// ReadRegular has no owner rule (state files), only the kind and size.
func TestReadRegular(t *testing.T) {
	needRoot(t)
	dir := t.TempDir()
	p := mk(t, dir, "f", 0o666, "data")
	os.Chown(p, nobody, nobody)
	if b, err := ReadRegular("state file", p, 4); err != nil || string(b) != "data" {
		t.Fatalf("%q %v", b, err)
	}
	if _, err := ReadRegular("state file", p, 3); err == nil || !strings.Contains(err.Error(), "larger than 3 bytes") {
		t.Fatalf("over the limit: %v", err)
	}
}

// A lock opened with O_CREATE through a planted symlink creates nothing
// where the link points.
func TestOpenRegularCreateNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(t.TempDir(), "victim")
	link := filepath.Join(dir, "x.lock")
	os.Symlink(target, link)
	if _, _, err := OpenRegular("lock file", link, os.O_RDWR|os.O_CREATE, 0o644); err == nil || !strings.Contains(err.Error(), "symbolic link") {
		t.Fatalf("got %v", err)
	}
	if _, err := os.Lstat(target); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("the link's target was created: %v", err)
	}
	fifo := filepath.Join(dir, "y.lock")
	syscall.Mkfifo(fifo, 0o644)
	err := within(t, func() error {
		_, _, err := OpenRegular("lock file", fifo, os.O_RDWR|os.O_CREATE, 0o644)
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "is a FIFO") {
		t.Fatalf("fifo lock: %v", err)
	}
	f, fi, err := OpenRegular("lock file", filepath.Join(dir, "z.lock"), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil || !fi.Mode().IsRegular() {
		t.Fatal(err)
	}
	f.Close()
}

func TestOpenFIFO(t *testing.T) {
	dir := t.TempDir()
	mkfifo := func(name string, mode uint32) string {
		p := filepath.Join(dir, name)
		if err := syscall.Mkfifo(p, mode); err != nil {
			t.Fatal(err)
		}
		os.Chmod(p, fs.FileMode(mode))
		return p
	}
	good := mkfifo("good", 0o600)
	link := filepath.Join(dir, "link")
	os.Symlink(good, link)
	cases := []struct{ name, path, want string }{
		{"own fifo", good, ""},
		{"symlink", link, "is a symbolic link"},
		{"group writable", mkfifo("gw", 0o620), `run: chmod go-w`},
		{"others writable", mkfifo("ow", 0o602), `(mode 0602)`},
		{"regular file", mk(t, dir, "file", 0o600, ""), "is a regular file, not a FIFO"},
	}
	if os.Geteuid() == 0 {
		foreign := mkfifo("foreign", 0o600)
		os.Chown(foreign, nobody, nobody)
		cases = append(cases, struct{ name, path, want string }{"foreign owner", foreign, "owned by uid 65534"})
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var f *os.File
			err := within(t, func() error {
				var err error
				f, err = OpenFIFO("fifo", tc.path)
				return err
			})
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				f.Close()
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want %q", err, tc.want)
			}
		})
	}
}

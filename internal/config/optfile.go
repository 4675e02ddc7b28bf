package config

import (
	"bufio"
	"bytes"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// OptionFile is what vipguard takes from a MySQL option file's client groups.
type OptionFile struct {
	User, Password, Socket, Host string
	Port                         int
}

// clientGroups are read in this order, later ones overriding earlier ones,
// as the MariaDB and MySQL command-line clients do.
var clientGroups = map[string]int{"client": 1, "client-server": 2, "client-mariadb": 3}

// maxIncludeDepth bounds !include chains (and loops).
const maxIncludeDepth = 8

// ReadOptionFile reads the [client] groups of a MySQL option file, following
// !include and !includedir. A file that sets a password must not be readable
// by others.
func ReadOptionFile(path string) (*OptionFile, error) {
	var o OptionFile
	if err := readOptionFile(path, &o, 0); err != nil {
		return nil, err
	}
	return &o, nil
}

func readOptionFile(path string, o *OptionFile, depth int) error {
	if depth > maxIncludeDepth {
		return fmt.Errorf("option file %q: !include nested deeper than %d", path, maxIncludeDepth)
	}
	data, fi, err := readTrusted("option file", path)
	if err != nil {
		return err
	}
	hadPassword := o.Password
	o.Password = ""
	err = ParseOptionFile(data, o, func(directive, arg string) error {
		switch directive {
		case "include":
			return readOptionFile(resolveRel(path, arg), o, depth+1)
		case "includedir":
			return readOptionDir(resolveRel(path, arg), o, depth+1)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("option file %q: %w", path, err)
	}
	if o.Password != "" {
		if err := checkSecretPerm(path, fi.Mode()); err != nil {
			return err
		}
	} else {
		o.Password = hadPassword
	}
	return nil
}

func resolveRel(from, p string) string {
	if filepath.IsAbs(p) {
		return p
	}
	return filepath.Join(filepath.Dir(from), p)
}

// readOptionDir reads *.cnf files in name order, as mysqld's !includedir does.
func readOptionDir(dir string, o *OptionFile, depth int) error {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return fmt.Errorf("cannot read option directory %q: %w", dir, bareErr(err))
	}
	names := make([]string, 0, len(ents))
	for _, e := range ents {
		if !e.IsDir() && strings.HasSuffix(e.Name(), ".cnf") {
			names = append(names, e.Name())
		}
	}
	sort.Strings(names)
	for _, n := range names {
		if err := readOptionFile(filepath.Join(dir, n), o, depth); err != nil {
			return err
		}
	}
	return nil
}

// ParseOptionFile parses option-file bytes into o. Directives (!include,
// !includedir) are passed to include, which may be nil to ignore them.
// Unknown keys and groups are ignored, as MySQL clients ignore them.
func ParseOptionFile(data []byte, o *OptionFile, include func(directive, arg string) error) error {
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	group := 0
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if n == 1 {
			line = strings.TrimPrefix(line, "\ufeff")
		}
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
			continue
		case line[0] == '!':
			directive, arg, _ := strings.Cut(line[1:], " ")
			arg = strings.TrimSpace(arg)
			if directive != "include" && directive != "includedir" {
				return fmt.Errorf("line %d: unknown directive %q", n, "!"+directive)
			}
			if arg == "" {
				return fmt.Errorf("line %d: !%s needs a path", n, directive)
			}
			if include != nil {
				if err := include(directive, arg); err != nil {
					return err
				}
			}
			continue
		case line[0] == '[':
			end := strings.IndexByte(line, ']')
			if end < 0 {
				return fmt.Errorf("line %d: group header %q has no closing ]", n, line)
			}
			group = clientGroups[strings.ToLower(strings.TrimSpace(line[1:end]))]
			continue
		}
		if group == 0 {
			continue
		}
		key, val, hasVal := strings.Cut(line, "=")
		key = strings.ReplaceAll(strings.ToLower(strings.TrimSpace(key)), "_", "-")
		v, err := optionValue(val)
		if err != nil {
			return fmt.Errorf("line %d: %s: %w", n, key, err)
		}
		if !hasVal && key != "password" {
			continue // a bare flag such as "compress"; not ours
		}
		switch key {
		case "user":
			o.User = v
		case "password":
			o.Password = v
		case "socket":
			o.Socket = v
		case "host":
			o.Host = v
		case "port":
			p, err := strconv.Atoi(v)
			if err != nil || p < 1 || p > 65535 {
				return fmt.Errorf("line %d: port %q is not a TCP port", n, v)
			}
			o.Port = p
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading: %w", err)
	}
	return nil
}

// optionValue unquotes an option value the way the MySQL clients do: quotes
// with backslash escapes, or a bare word ending at an unquoted comment.
func optionValue(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	if q := s[0]; q == '"' || q == '\'' {
		var b strings.Builder
		for i := 1; i < len(s); i++ {
			c := s[i]
			switch {
			case c == q:
				rest := strings.TrimSpace(s[i+1:])
				if rest != "" && rest[0] != '#' {
					return "", fmt.Errorf("text after closing quote: %q", rest)
				}
				return b.String(), nil
			case c == '\\' && i+1 < len(s):
				i++
				b.WriteByte(unescape(s[i]))
			default:
				b.WriteByte(c)
			}
		}
		return "", fmt.Errorf("unterminated quote in %q", s)
	}
	if i := strings.Index(s, " #"); i >= 0 {
		s = s[:i]
	}
	if i := strings.Index(s, "\t#"); i >= 0 {
		s = s[:i]
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+1 < len(s) {
			i++
			b.WriteByte(unescape(s[i]))
			continue
		}
		b.WriteByte(s[i])
	}
	return strings.TrimSpace(b.String()), nil
}

func unescape(c byte) byte {
	switch c {
	case 'n':
		return '\n'
	case 't':
		return '\t'
	case 'r':
		return '\r'
	case 'b':
		return '\b'
	case 's':
		return ' '
	}
	return c
}

// checkSecretPerm refuses a file holding a password when others may read it
// or anyone but the owner may change it. Group read (0640) is allowed so a
// daemon user in the file's group can read its credentials, as packaged.
// mode is what fstat said when the file was read.
func checkSecretPerm(path string, mode fs.FileMode) error {
	if mode.Perm()&0o026 != 0 {
		return &PermError{Path: path, Mode: mode}
	}
	return nil
}

// PermError says a file holding a secret has unsafe permissions.
type PermError struct {
	Path string
	Mode fs.FileMode
}

func (e *PermError) Error() string {
	return fmt.Sprintf("%q holds a password but its mode is %04o (readable by others or writable by its group); run: chmod 0600 %q",
		e.Path, e.Mode.Perm(), e.Path)
}

var tableNameRE = regexp.MustCompile(`^[A-Za-z0-9_$]{1,64}\.[A-Za-z0-9_$]{1,64}$`)

func validTableName(s string) bool { return tableNameRE.MatchString(s) }

func validIP(s string) bool { return net.ParseIP(s) != nil }

// keyLine finds the line where an undecoded key was written, for the error
// message (BurntSushi/toml keeps key positions unexported).
func keyLine(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table := strings.Join(key[:len(key)-1], ".")
	name := key[len(key)-1]
	cur := ""
	for n, raw := range strings.Split(string(data), "\n") {
		line := strings.TrimSpace(raw)
		if strings.HasPrefix(line, "[") {
			cur = strings.Trim(strings.TrimSpace(strings.Trim(line, "[]")), `"`)
			if cur == strings.Join(key, ".") {
				return n + 1
			}
			continue
		}
		k, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		k = strings.Trim(strings.TrimSpace(k), `"'`)
		if (cur == table && k == name) || (cur == "" && k == key.String()) {
			return n + 1
		}
	}
	return 0
}

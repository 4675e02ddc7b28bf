package mariadbtest

import (
	"bufio"
	"fmt"
	"os"
	"regexp"
	"strings"
)

var verticalKeyRE = regexp.MustCompile(`^\s*([A-Za-z0-9_]+): ?(.*)$`)

// ReadVertical loads a result set recorded with the mysql client's \G
// output: "Column: value" lines, NULL as nil, continuation lines appended
// to the value above. MySQL-only dialect is tested on such recordings.
func ReadVertical(path string) ([]string, [][]*string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	var cols []string
	var rows [][]*string
	var cur []*string
	sc := bufio.NewScanner(f)
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.HasPrefix(line, "****") {
			if cur != nil {
				rows = append(rows, cur)
			}
			cur = []*string{}
			continue
		}
		if cur == nil {
			return nil, nil, fmt.Errorf("%s:%d: value before the first row marker", path, n)
		}
		m := verticalKeyRE.FindStringSubmatch(line)
		if m == nil {
			if len(cur) == 0 || cur[len(cur)-1] == nil {
				return nil, nil, fmt.Errorf("%s:%d: continuation of nothing", path, n)
			}
			v := *cur[len(cur)-1] + "\n" + line
			cur[len(cur)-1] = &v
			continue
		}
		if len(rows) == 0 {
			cols = append(cols, m[1])
		}
		if m[2] == "NULL" {
			cur = append(cur, nil)
		} else {
			v := m[2]
			cur = append(cur, &v)
		}
	}
	if cur != nil {
		rows = append(rows, cur)
	}
	return cols, rows, sc.Err()
}

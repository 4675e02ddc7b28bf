module github.com/vipguard/vipguard

go 1.25.0

require (
	github.com/BurntSushi/toml v1.6.0
	github.com/alecthomas/kong v1.17.0
	github.com/coreos/go-systemd/v22 v22.7.0
	github.com/go-sql-driver/mysql v1.10.1
	golang.org/x/sys v0.47.0
)

require filippo.io/edwards25519 v1.2.0 // indirect

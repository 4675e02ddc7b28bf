#!/bin/sh
# The pattern agentcheck replaces, for the benchmark: a clustercheck-style
# HTTP health check that xinetd or socat forks for every check, running the
# mysql client each time. Usage (socat): EXEC:"clustercheck.sh SOCKET".
sock=$1
ro=$(mysql --no-defaults -S "$sock" -uroot -N -B -e "SELECT @@global.read_only" 2>/dev/null)
# Read the request head so that closing does not reset the connection.
cr=$(printf '\r')
while IFS= read -r line; do
	[ "$line" = "$cr" ] || [ -z "$line" ] && break
done
if [ "$ro" = "0" ]; then
	body="MySQL is writable."
	printf 'HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' "${#body}" "$body"
else
	body="MySQL is read-only or down."
	printf 'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s' "${#body}" "$body"
fi

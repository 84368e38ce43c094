package server

import "testing"

func TestLoopbackOnly(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9123": true, "[::1]:9123": true, "localhost:9123": true,
		":9123": false, "0.0.0.0:9123": false, "[::]:9123": false, "10.0.0.7:9123": false, "strom:9123": false, "bad": false,
	} {
		if got := loopbackOnly(addr); got != want {
			t.Errorf("loopbackOnly(%q) = %v, want %v", addr, got, want)
		}
	}
}

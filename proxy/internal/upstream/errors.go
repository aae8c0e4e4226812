package upstream

// HeaderLimitError is an upstream response whose header section was over
// limits.max_response_header_bytes (THREATS P8), from any transport: the
// fast path's reader, net/http's HTTP/1.1 and HTTP/2 transports
// (tcpErrors) or HTTP/3 (h3Transport). Its text is the transport's own.
type HeaderLimitError struct {
	Limit int
	err   error
}

func (e *HeaderLimitError) Error() string { return e.err.Error() }
func (e *HeaderLimitError) Unwrap() error { return e.err }

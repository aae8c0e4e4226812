package inbound

// limitError is a refusal caused by one of the limits; key is its YAML key.
type limitError struct{ key string }

func errLimit(key string) *limitError { return &limitError{key: key} }

func (e *limitError) Error() string { return "over " + e.key }

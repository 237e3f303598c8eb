package control

// SetBeforeRegister makes f run in every new session between its token
// check and its registration.
func SetBeforeRegister(s *Server, f func()) { s.beforeRegister.Store(&f) }

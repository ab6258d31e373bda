// A module with one package of each kind testreport must count; its test
// runs `go test -json ./...` here. broken does not compile on purpose.
module example.com/testreport

go 1.24

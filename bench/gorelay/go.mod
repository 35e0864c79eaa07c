module gorelay

go 1.19

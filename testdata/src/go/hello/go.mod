module wispfixtures/hello

go 1.26

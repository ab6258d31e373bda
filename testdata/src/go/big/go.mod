module wispfixtures/big

go 1.26

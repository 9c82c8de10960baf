module custody.invalid/guests

go 1.21

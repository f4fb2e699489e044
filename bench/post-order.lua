-- wrk script: POST one valid order per request, keep-alive.
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"customer":"bench@example.com","currency":"EUR",' ..
           '"items":[{"sku":"BOOK-42","quantity":2,"unit_amount":1250}],' ..
           '"metadata":{"channel":"bench"}}'

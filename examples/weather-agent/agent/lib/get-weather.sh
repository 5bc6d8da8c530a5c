#!/bin/sh
# A stand-in weather client: reads {"city": "..."} on stdin and prints a forecast as JSON.
# lib/ is never mounted into the agent's workspace; only tools run it.
input=$(cat)
city=$(printf '%s' "$input" | sed -n 's/.*"city"[[:space:]]*:[[:space:]]*"\([^"\\]*\)".*/\1/p')
[ -n "$city" ] || city="Brooklyn"
printf '{"city":"%s","temperatureF":72,"condition":"Sunny","summary":"Sunny in %s with a light breeze."}\n' "$city" "$city"

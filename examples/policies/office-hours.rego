# Deploys only in office hours: Monday to Friday, 08:00 to 18:00 in the zone below. Tokens
# named `oncall` may deploy at any time.
package kindling.admission

zone := "Europe/Berlin"

office := {"days": {"Monday", "Tuesday", "Wednesday", "Thursday", "Friday"}, "from": 8, "to": 18}

now := [time.now_ns(), zone]

in_office_hours if {
	office.days[time.weekday(now)]
	[hour, _, _] := time.clock(now)
	hour >= office.from
	hour < office.to
}

deny contains msg if {
	not in_office_hours
	input.token.name != "oncall"
	msg := sprintf("deploys are allowed %v, %d:00-%d:00 %s; it is %s %d:00 there (or deploy with the `oncall` token)", [sort(office.days), office.from, office.to, zone, time.weekday(now), time.clock(now)[0]])
}

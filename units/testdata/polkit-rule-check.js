// Runs units/connetd-ondemand.rules under a stand-in for polkit's API and
// checks whom it grants what (units/polkit_test.go; node ARGV: the rules file).
const fs = require("fs");
let rule;
const polkit = { Result: { YES: "yes", NO: "no", NOT_HANDLED: null }, addRule: f => { rule = f; } };
eval(fs.readFileSync(process.argv[2], "utf8"));
const act = (id, d) => ({ id, lookup: k => d[k] });
const cases = [
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-echo.service", verb: "start"}, "connetd", "yes"],
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-echo.service", verb: "stop"}, "connetd", "yes"],
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-a@b.service", verb: "start"}, "connetd", "yes"],
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-echo.service", verb: "restart"}, "connetd", null],
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-echo.service", verb: "start"}, "alice", null],
  ["org.freedesktop.systemd1.manage-units", {unit: "ssh.service", verb: "start"}, "connetd", null],
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-.service", verb: "start"}, "connetd", null],
  ["org.freedesktop.systemd1.manage-units", {unit: "connetd-ondemand-x.socket", verb: "start"}, "connetd", null],
  ["org.freedesktop.systemd1.manage-units", {unit: "xconnetd-ondemand-x.service", verb: "start"}, "connetd", null],
  ["org.freedesktop.systemd1.manage-units", {verb: "start"}, "connetd", null],
  ["org.freedesktop.systemd1.manage-unit-files", {unit: "connetd-ondemand-echo.service", verb: "start"}, "connetd", null],
];
let bad = 0;
for (const [id, d, user, want] of cases) {
  const got = rule(act(id, d), { user });
  if (got !== want) { console.log("FAIL", id, JSON.stringify(d), user, got, "want", want); bad++; }
}
console.log(bad ? "failures" : "ok"); process.exit(bad ? 1 : 0);

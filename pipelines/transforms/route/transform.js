// route: sends each document down a named route, or drops it, by rules in
// its config. The first rule whose conditions all hold decides; a document
// no rule matches takes `default_route`. The route goes into the record's
// key, a `route` header, and (by default) the document's `labels.route`.
import { defineTransform, InvalidInput } from "./sdk/js/sluice.js";

const OPERATORS = ["eq", "ne", "gt", "gte", "lt", "lte", "in", "prefix", "contains", "matches", "exists"];

export const { init, process } = defineTransform({
  init(config) {
    if (!Array.isArray(config.rules)) throw new Error("`rules` must be an array of tables");
    this.rules = config.rules.map((rule, i) => compileRule(rule, `rules[${i}]`));
    this.defaultRoute = config.default_route;
    this.routeField = config.route_field ? config.route_field.split(".") : null;
    this.keyByRoute = config.key_by_route;
  },

  process(record, out) {
    const document = record.json();
    if (document === null || typeof document !== "object" || Array.isArray(document)) {
      throw new InvalidInput("expected a JSON object");
    }
    const rule = this.rules.find((r) => r.matches(document));
    if (rule?.drop) return;
    const route = rule ? rule.route : this.defaultRoute;
    if (this.routeField) setPath(document, this.routeField, route);
    const options = { headers: [["route", route]] };
    if (this.keyByRoute) options.key = route;
    out.push(document, options);
  },
});

function compileRule(rule, where) {
  if (rule === null || typeof rule !== "object" || Array.isArray(rule)) {
    throw new Error(`${where} must be a table like { when = { ... }, route = "name" }`);
  }
  for (const key of Object.keys(rule)) {
    if (!["when", "route", "drop"].includes(key)) {
      throw new Error(`${where} has an unknown key \`${key}\`; a rule has when, route and drop`);
    }
  }
  const drop = rule.drop === true;
  if (drop === (typeof rule.route === "string")) {
    throw new Error(`${where} needs exactly one of \`route = "name"\` and \`drop = true\``);
  }
  const conditions = Object.entries(rule.when ?? {}).map(([field, condition]) =>
    compileCondition(field.split("."), condition, `${where}.when.${field}`),
  );
  return { drop, route: rule.route, matches: (doc) => conditions.every((holds) => holds(doc)) };
}

function compileCondition(path, condition, where) {
  // A plain value means "equals".
  if (condition === null || typeof condition !== "object" || Array.isArray(condition)) {
    return (doc) => equal(getPath(doc, path), condition);
  }
  const tests = Object.entries(condition).map(([op, arg]) => {
    switch (op) {
      case "eq": return (v) => equal(v, arg);
      case "ne": return (v) => !equal(v, arg);
      case "gt": return (v) => typeof v === typeof arg && v > arg;
      case "gte": return (v) => typeof v === typeof arg && v >= arg;
      case "lt": return (v) => typeof v === typeof arg && v < arg;
      case "lte": return (v) => typeof v === typeof arg && v <= arg;
      case "in":
        if (!Array.isArray(arg)) throw new Error(`${where}: \`in\` takes a list`);
        return (v) => arg.some((a) => equal(v, a));
      case "prefix": return (v) => typeof v === "string" && v.startsWith(String(arg));
      case "contains": return (v) => (typeof v === "string" || Array.isArray(v)) && v.includes(arg);
      case "matches": {
        let regex;
        try {
          regex = new RegExp(arg);
        } catch (error) {
          throw new Error(`${where}: \`matches\` is not a valid regular expression: ${error.message}`);
        }
        return (v) => typeof v === "string" && regex.test(v);
      }
      case "exists": return (v) => (v !== undefined) === Boolean(arg);
      default:
        throw new Error(`${where}: unknown operator \`${op}\`; use one of ${OPERATORS.join(", ")}`);
    }
  });
  return (doc) => {
    const value = getPath(doc, path);
    return tests.every((test) => test(value));
  };
}

function equal(a, b) {
  return a === b || (typeof a === "object" && a !== null && JSON.stringify(a) === JSON.stringify(b));
}

function getPath(doc, path) {
  let value = doc;
  for (const key of path) {
    if (value === null || typeof value !== "object") return undefined;
    value = value[key];
  }
  return value;
}

function setPath(doc, path, value) {
  let at = doc;
  for (const key of path.slice(0, -1)) {
    if (at[key] === null || typeof at[key] !== "object" || Array.isArray(at[key])) at[key] = {};
    at = at[key];
  }
  at[path[path.length - 1]] = value;
}

"""Twenty JSON Schemas for the structured-output tests: enums, nested objects, arrays with min/max items,
required fields, string patterns, numbers with bounds (each with a prompt that asks for it)."""

PERSON = {
    "type": "object",
    "properties": {
        "name": {"type": "string", "maxLength": 30},
        "age": {"type": "integer", "minimum": 0, "maximum": 120},
    },
    "required": ["name", "age"],
    "additionalProperties": False,
}

SCHEMAS: list[tuple[str, dict]] = [
    ("a person", PERSON),
    ("a traffic light colour", {"type": "object", "properties": {"colour": {"enum": ["red", "amber", "green"]}}, "required": ["colour"], "additionalProperties": False}),
    ("a temperature reading", {"type": "object", "properties": {"celsius": {"type": "number", "minimum": -40, "maximum": 50}}, "required": ["celsius"], "additionalProperties": False}),
    ("three fruits", {"type": "array", "items": {"type": "string", "maxLength": 12}, "minItems": 3, "maxItems": 3}),
    ("an address", {"type": "object", "properties": {"street": {"type": "string", "maxLength": 40}, "city": {"type": "string", "maxLength": 20}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["street", "city", "zip"], "additionalProperties": False}),
    ("a person with an address", {"type": "object", "properties": {"person": PERSON, "address": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}, "country": {"enum": ["FR", "DE", "US", "JP"]}}, "required": ["city", "country"], "additionalProperties": False}}, "required": ["person", "address"], "additionalProperties": False}),
    ("a yes/no answer", {"type": "boolean"}),
    ("a dice roll", {"type": "integer", "minimum": 1, "maximum": 6}),
    ("a date", {"type": "string", "pattern": "^20[0-9]{2}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9])$"}),
    ("a list of one to four scores", {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 100}, "minItems": 1, "maxItems": 4}),
    ("a product", {"type": "object", "properties": {"sku": {"type": "string", "pattern": "^[A-Z]{3}-[0-9]{4}$"}, "price": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000}, "in_stock": {"type": "boolean"}}, "required": ["sku", "price", "in_stock"], "additionalProperties": False}),
    ("a team of two people", {"type": "object", "properties": {"team": {"type": "array", "items": PERSON, "minItems": 2, "maxItems": 2}}, "required": ["team"], "additionalProperties": False}),
    ("a point in 3D", {"type": "object", "properties": {"x": {"type": "number", "minimum": -10, "maximum": 10}, "y": {"type": "number", "minimum": -10, "maximum": 10}, "z": {"type": "number", "minimum": -10, "maximum": 10}}, "required": ["x", "y", "z"], "additionalProperties": False}),
    ("a book with optional subtitle", {"type": "object", "properties": {"title": {"type": "string", "maxLength": 30}, "subtitle": {"type": "string", "maxLength": 30}, "year": {"type": "integer", "minimum": 1450, "maximum": 2030}}, "required": ["title", "year"], "additionalProperties": False}),
    ("a hex colour", {"type": "object", "properties": {"hex": {"type": "string", "pattern": "^#[0-9a-f]{6}$"}}, "required": ["hex"], "additionalProperties": False}),
    ("a sentiment with confidence", {"type": "object", "properties": {"label": {"enum": ["positive", "negative", "neutral"]}, "confidence": {"type": "number", "minimum": 0, "maximum": 1}}, "required": ["label", "confidence"], "additionalProperties": False}),
    ("an id that is a number or a code", {"type": "object", "properties": {"id": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 999}, {"type": "string", "pattern": "^ID[0-9]{3}$"}]}}, "required": ["id"], "additionalProperties": False}),
    ("a matrix of two rows of two", {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": -9, "maximum": 9}, "minItems": 2, "maxItems": 2}, "minItems": 2, "maxItems": 2}),
    ("an event", {"type": "object", "properties": {"name": {"type": "string", "minLength": 3, "maxLength": 20}, "attendees": {"type": "integer", "minimum": 1, "maximum": 500}, "tags": {"type": "array", "items": {"enum": ["music", "sport", "art", "food"]}, "minItems": 1, "maxItems": 3}}, "required": ["name", "attendees", "tags"], "additionalProperties": False}),
    ("a settings object with a nested $ref", {"$defs": {"toggle": {"type": "object", "properties": {"on": {"type": "boolean"}, "level": {"type": "integer", "minimum": 0, "maximum": 3}}, "required": ["on", "level"], "additionalProperties": False}}, "type": "object", "properties": {"wifi": {"$ref": "#/$defs/toggle"}, "sound": {"$ref": "#/$defs/toggle"}}, "required": ["wifi", "sound"], "additionalProperties": False}),
]  # fmt: skip

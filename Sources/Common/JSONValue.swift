import Foundation

/// A JSON document with object keys in a chosen order, printed the same way every time:
/// two-space indentation, numbers in their shortest round-trip form, integers without a
/// fraction. Baselines and reports use it so that a diff in review shows only real changes.
public indirect enum JSONValue: Equatable, Sendable {
    case null
    case bool(Bool)
    case number(Double)
    case string(String)
    case array([JSONValue])
    case object([(String, JSONValue)])

    public static func == (a: JSONValue, b: JSONValue) -> Bool { a.rendered() == b.rendered() }

    /// The document as text, ending with a newline.
    public func rendered() -> String {
        var out = ""
        write(into: &out, indent: 0)
        return out + "\n"
    }

    private func write(into out: inout String, indent: Int) {
        let pad = String(repeating: "  ", count: indent + 1), closePad = String(repeating: "  ", count: indent)
        switch self {
        case .null: out += "null"
        case .bool(let b): out += b ? "true" : "false"
        case .number(let d): out += JSONValue.format(d)
        case .string(let s): out += JSONValue.quote(s)
        case .array(let items):
            if items.isEmpty { out += "[]"; return }
            if items.allSatisfy({ if case .number = $0 { return true } else { return false } }) {
                out += "[" + items.map { $0.rendered().dropLast() }.joined(separator: ", ") + "]"
                return
            }
            out += "[\n"
            for (i, item) in items.enumerated() {
                out += pad
                item.write(into: &out, indent: indent + 1)
                out += i + 1 < items.count ? ",\n" : "\n"
            }
            out += closePad + "]"
        case .object(let pairs):
            if pairs.isEmpty { out += "{}"; return }
            out += "{\n"
            for (i, (k, v)) in pairs.enumerated() {
                out += pad + JSONValue.quote(k) + ": "
                v.write(into: &out, indent: indent + 1)
                out += i + 1 < pairs.count ? ",\n" : "\n"
            }
            out += closePad + "}"
        }
    }

    /// Integers as integers; other finite values in Swift's shortest round-trip form;
    /// non-finite values (not valid JSON) as null.
    public static func format(_ d: Double) -> String {
        guard d.isFinite else { return "null" }
        if d == d.rounded() && abs(d) < 9.007e15 { return String(Int64(d)) }
        return "\(d)"
    }

    public static func quote(_ s: String) -> String {
        var out = "\""
        for ch in s.unicodeScalars {
            switch ch {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where ch.value < 0x20: out += String(format: "\\u%04x", ch.value)
            default: out.unicodeScalars.append(ch)
            }
        }
        return out + "\""
    }

    public subscript(key: String) -> JSONValue? {
        guard case .object(let pairs) = self else { return nil }
        return pairs.first { $0.0 == key }?.1
    }

    public var double: Double? { if case .number(let d) = self { return d } else { return nil } }
    public var string: String? { if case .string(let s) = self { return s } else { return nil } }
    public var bool: Bool? { if case .bool(let b) = self { return b } else { return nil } }
}

extension JSONValue {
    /// The document as Foundation objects (dictionaries, arrays, NSNumber, String, NSNull), for
    /// readers written against them; numbers with an integral value become integers.
    public var foundationObject: Any {
        switch self {
        case .null: return NSNull()
        case .bool(let b): return b
        case .number(let d): return d == d.rounded() && abs(d) < 9.007e15 ? NSNumber(value: Int(d)) : NSNumber(value: d)
        case .string(let s): return s
        case .array(let items): return items.map(\.foundationObject)
        case .object(let pairs): return Dictionary(pairs.map { ($0.0, $0.1.foundationObject) }, uniquingKeysWith: { _, last in last })
        }
    }

    /// A document built from Foundation objects, object keys sorted (what `LayerListWriter`
    /// builds); nil for anything JSON cannot hold.
    public init?(foundation object: Any) {
        switch object {
        case is NSNull: self = .null
        case let b as Bool where type(of: object) == Bool.self: self = .bool(b)
        case let i as Int: self = .number(Double(i))
        case let d as Double: self = .number(d)
        case let f as Float: self = .number(Double(f))
        case let s as String: self = .string(s)
        case let a as [Any]:
            var items: [JSONValue] = []
            for x in a { guard let v = JSONValue(foundation: x) else { return nil }; items.append(v) }
            self = .array(items)
        case let o as [String: Any]:
            var pairs: [(String, JSONValue)] = []
            for k in o.keys.sorted() { guard let v = JSONValue(foundation: o[k]!) else { return nil }; pairs.append((k, v)) }
            self = .object(pairs)
        default: return nil
        }
    }
}

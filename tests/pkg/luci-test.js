#!/usr/bin/env node
// Checks luci-app-rupnpd without a browser or a router:
//   - every view file compiles the way LuCI's loader compiles it (the file is the body of a
//     function whose parameters are the modules named by its leading 'require …' lines) and
//     evaluates to a class definition with the methods LuCI calls;
//   - every JSON file of the packages parses; the menu entry points at an existing view and the
//     rpcd ACL grants every ubus method the views declare;
//   - the settings page offers every option of /etc/config/upnpd, and renders a `list` reply into
//     the mappings and pinhole tables (host names from getHostHints, times, origins), and its
//     Delete button calls `rupnpd delete` with the mapping's protocol and external port;
//   - the status overview box renders mappings, and nothing when the daemon is not running.
// LuCI's modules are replaced by small recording stand-ins. Exits non-zero on any failure.
'use strict';

const fs = require('fs');
const path = require('path');
const vm = require('vm');

const root = path.resolve(__dirname, '../..');
const pkgDir = path.join(root, 'openwrt-pkg');
const appDir = path.join(pkgDir, 'luci-app-rupnpd');
const viewDir = path.join(appDir, 'htdocs/luci-static/resources/view');

let passed = 0, failed = 0;
function ok(name) { console.log('ok   ' + name); passed++; }
function bad(name, detail) { console.log('FAIL ' + name + (detail ? ': ' + detail : '')); failed++; }
function check(name, cond, detail) { cond ? ok(name) : bad(name, detail); }

function walk(dir, pred, out = []) {
	for (const e of fs.readdirSync(dir, { withFileTypes: true })) {
		const p = path.join(dir, e.name);
		if (e.isDirectory()) walk(p, pred, out);
		else if (pred(p)) out.push(p);
	}
	return out;
}

// --- LuCI stand-ins ----------------------------------------------------------------------------

// String.prototype.format as LuCI defines it, for the conversions the views use.
function format(fmt, ...args) {
	return fmt.replace(/%(\d+)?(?:\.(\d+))?([sdhtm%])/g, (all, width, prec, conv) => {
		if (conv == '%') return '%';
		const v = args.shift();
		switch (conv) {
		case 's': return String(v);
		case 'd': return String(Math.floor(+v || 0));
		case 'h': return String(v).replace(/[&<>"']/g, c => '&#' + c.charCodeAt(0) + ';');
		case 't': {
			let s = +v || 0, out = '';
			for (const [u, n] of [['d', 86400], ['h', 3600], ['m', 60]])
				if (s >= n) { out += Math.floor(s / n) + u + ' '; s %= n; }
			return out + s + 's';
		}
		case 'm': {
			const base = +width || 1000, units = ['', 'K', 'M', 'G', 'T'];
			let x = +v || 0, i = 0;
			while (x >= base && i < units.length - 1) { x /= base; i++; }
			return (i ? x.toFixed(+prec || 2) : String(x)) + ' ' + units[i] + (i && base == 1024 ? 'i' : '');
		}
		}
	});
}

function makeEnv(replies, uciData) {
	const log = { calls: [], tables: [], polls: [], notes: [], uciSet: [] };

	const E = (tag, attrs, children) => {
		if (Array.isArray(attrs) || typeof attrs != 'object' || attrs == null || attrs.tag) {
			children = attrs;
			attrs = {};
		}
		const kids = children == null ? [] : (Array.isArray(children) ? children : [children]);
		return { tag, attrs, children: kids };
	};

	class Option {
		constructor(cls, name, args) {
			Object.assign(this, { cls, name, args, deps: [], values: [] });
		}
		depends(k, v) { this.deps.push([k, v]); }
		value(k, v) { this.values.push([k, v]); }
	}
	class Section {
		constructor(cls, args) {
			Object.assign(this, { cls, args, tabs: [], options: [] });
		}
		tab(name, title) { this.tabs.push(name); }
		taboption(tab, cls, name, ...args) {
			const o = new Option(cls, name, args);
			o.tab = tab;
			if (cls == form.SectionValue) o.subsection = new Section(args[0], args.slice(1));
			this.options.push(o);
			return o;
		}
		option(cls, name, ...args) { return this.taboption(null, cls, name, ...args); }
	}
	const token = name => ({ name });
	const form = {
		Map: class {
			constructor(config, title, descr) {
				Object.assign(this, { config, title, descr, sections: [] });
			}
			section(cls, ...args) {
				const s = new Section(cls, args);
				this.sections.push(s);
				return s;
			}
			render() { return Promise.resolve({ tag: 'cbi-map', map: this, children: [] }); }
		},
		NamedSection: token('NamedSection'), GridSection: token('GridSection'),
		TypedSection: token('TypedSection'), SectionValue: token('SectionValue'),
		Flag: token('Flag'), Value: token('Value'), ListValue: token('ListValue'),
		DynamicList: token('DynamicList'), DummyValue: token('DummyValue')
	};

	const modules = {
		view: { extend: def => def },
		baseclass: { extend: def => def },
		form,
		rpc: {
			declare: opts => {
				log.declared = log.declared || [];
				log.declared.push([opts.object, opts.method]);
				return (...args) => {
					const params = {};
					(opts.params || []).forEach((p, i) => { if (args[i] !== undefined) params[p] = args[i]; });
					log.calls.push([opts.object + '/' + opts.method, params]);
					let reply = replies[opts.object + '/' + opts.method];
					reply = (reply === undefined) ? {} : JSON.parse(JSON.stringify(reply));
					if (opts.expect) {
						const key = Object.keys(opts.expect)[0];
						if (key != '') reply = reply[key];
						const dflt = opts.expect[key];
						if (reply == null || Array.isArray(reply) != Array.isArray(dflt) || typeof reply != typeof dflt)
							reply = dflt;
					}
					return Promise.resolve(reply);
				};
			}
		},
		uci: {
			load: () => Promise.resolve(),
			unload: () => {},
			get: (conf, sid, opt) => opt == null ? uciData[sid] : (uciData[sid] || {})[opt],
			set: (...args) => log.uciSet.push(args)
		},
		ui: {
			createHandlerFn: (ctx, fn, ...args) => (...rest) =>
				(typeof fn == 'string' ? ctx[fn] : fn).apply(ctx, args.concat(rest)),
			addNotification: (title, node, cls) => log.notes.push([cls, node])
		},
		dom: {
			content: (node, content) => { node.children = [content]; },
			parent: () => null
		},
		poll: { add: (fn, interval) => log.polls.push([fn, interval]) },
		widgets: { NetworkSelect: token('NetworkSelect'), ZoneSelect: token('ZoneSelect') }
	};

	const L = {
		toArray: x => x == null ? [] : Array.isArray(x) ? x : String(x).trim().split(/\s+/).filter(Boolean),
		resolveDefault: (p, d) => Promise.resolve(p).catch(() => d),
		bind: (fn, ctx, ...args) => fn.bind(ctx, ...args)
	};
	const globals = {
		L, E,
		_: s => s,
		N_: (n, s, p) => (n == 1 ? s : p),
		cbi_update_table: (table, rows, placeholder) => log.tables.push({ table, rows, placeholder })
	};

	return { modules, globals, log, form };
}

// The loader: the leading 'require x [as y]'; directives become the function's parameters.
function compile(file) {
	const source = fs.readFileSync(file, 'utf8');
	const requires = [];
	const re = /^\s*'require\s+([\w.]+)(?:\s+as\s+(\w+))?';/gm;
	let m;
	while ((m = re.exec(source)) !== null) requires.push(m[2] || m[1].split('.').pop());
	const params = ['L', 'E', '_', 'N_', 'cbi_update_table'].concat(requires);
	const script = new vm.Script('(function(' + params.join(', ') + ') {\n' + source + '\n})',
		{ filename: file, lineOffset: -1 });
	return { script, requires, params };
}

function instantiate(file, env) {
	const { script, params } = compile(file);
	String.prototype.format = function(...args) { return format(String(this), ...args); };
	const fn = script.runInThisContext();
	return fn(...params.map(p => (p in env.globals) ? env.globals[p] : env.modules[p]));
}

// Depth-first search in the E() tree.
function findAll(node, pred, out = []) {
	if (node && typeof node == 'object') {
		if (pred(node)) out.push(node);
		for (const c of node.children || []) findAll(c, pred, out);
	}
	return out;
}
function text(node) {
	if (node == null) return '';
	if (typeof node != 'object') return String(node);
	return (node.children || []).map(text).join('');
}

// --- fixtures ------------------------------------------------------------------------------------

const replies = {
	'rupnpd/status': {
		enabled: true, enable_upnp: true, enable_natpmp: true, enable_pcp: false, secure_mode: true,
		log_packets: false, log_connections: false, external_ip: '203.0.113.7',
		external_ip_private: false, wan_device: 'wan', lan_devices: ['br-lan'], uptime: 3725,
		mappings: { total: 2, tcp: 1, udp: 1, upnp: 1, natpmp: 0, pcp: 1, pinholes: 1 },
		version: '0.1.0'
	},
	'rupnpd/list': {
		mappings: [
			{ proto: 'TCP', external_port: 8080, internal_ip: '192.168.1.10', internal_port: 80,
			  remote_host: '', description: 'web <server>', origin: 'upnp-igdv2', client: '192.168.1.10',
			  expires: 3600, packets: 12, bytes: 2048 },
			{ proto: 'UDP', external_port: 3478, internal_ip: '192.168.1.11', internal_port: 3478,
			  remote_host: '198.51.100.9', description: 'PCP', origin: 'pcp', client: '192.168.1.11',
			  expires: 0, packets: 0, bytes: 0 }
		],
		pinholes: [
			{ id: 1, proto: 'TCP', remote_host: '2001:db8::1', remote_port: 0, internal_ip: '2001:db8:1::10',
			  internal_port: 22, expires: 60, packets: 1, bytes: 60 }
		]
	},
	'luci-rpc/getHostHints': {
		'00:11:22:33:44:55': { name: 'nas', ipaddrs: ['192.168.1.10'], ip6addrs: ['2001:db8:1::10'] }
	}
};
const uciData = { config: { '.type': 'upnpd', enabled: '1', internal_iface: 'lan guest' } };

// Everything /etc/config/upnpd may hold (openwrt.md §1.1 plus rupnpd's options).
const UPNPD_OPTIONS = `enabled enable_upnp enable_natpmp secure_mode log_output download upload
	external_iface external_iface6 external_zone external_ip internal_iface port upnp_lease_file
	upnp_lease_file6 igdv1 uuid notify_interval presentation_url serial_number model_number
	system_uptime use_stun stun_host stun_port ipv6_disable ext_allow_private_ipv4
	enable_pcp log_packets log_connections hairpin max_mappings max_mappings_per_client
	min_lifetime max_lifetime upnp_max_lease pcp_allow_thirdparty max_subscribers
	max_subscribers_per_client ipv6_pinholes friendly_name nft_table nft_forward_chain
	nft_prerouting_chain nft_postrouting_chain`.split(/\s+/).filter(Boolean);
const PERM_RULE_OPTIONS = ['comment', 'int_addr', 'int_ports', 'ext_ports', 'action'];

// --- checks --------------------------------------------------------------------------------------

async function main() {
	// JSON
	for (const f of walk(pkgDir, p => p.endsWith('.json'))) {
		try { JSON.parse(fs.readFileSync(f, 'utf8')); ok('JSON parses: ' + path.relative(root, f)); }
		catch (e) { bad('JSON parses: ' + path.relative(root, f), e.message); }
	}

	// Every view compiles as LuCI compiles it.
	const views = walk(viewDir, p => p.endsWith('.js'));
	for (const f of views) {
		try { compile(f); ok('compiles: ' + path.relative(root, f)); }
		catch (e) { bad('compiles: ' + path.relative(root, f), e.message); }
	}

	const acl = JSON.parse(fs.readFileSync(path.join(appDir, 'root/usr/share/rpcd/acl.d/luci-app-rupnpd.json'), 'utf8'))['luci-app-rupnpd'];
	const menu = JSON.parse(fs.readFileSync(path.join(appDir, 'root/usr/share/luci/menu.d/luci-app-rupnpd.json'), 'utf8'));
	const granted = (obj, method) => ['read', 'write'].some(k => ((acl[k] || {}).ubus || {})[obj] &&
		acl[k].ubus[obj].includes(method));

	for (const [p, entry] of Object.entries(menu)) {
		const file = path.join(viewDir, entry.action.path + '.js');
		check('menu ' + p + ' points at an existing view', fs.existsSync(file), file);
		check('menu ' + p + ' depends on the ACL and on /etc/config/upnpd',
			(entry.depends.acl || []).includes('luci-app-rupnpd') && entry.depends.uci && entry.depends.uci.upnpd === true);
	}
	check('ACL: uci upnpd readable and writable', acl.read.uci.includes('upnpd') && acl.write.uci.includes('upnpd'));

	// The settings page.
	{
		const env = makeEnv(replies, uciData);
		const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
		check('rupnpd.js: view with load() and render()', typeof view.load == 'function' && typeof view.render == 'function');
		for (const [obj, method] of env.log.declared)
			check('ACL grants ' + obj + '/' + method + ' (rupnpd.js)', granted(obj, method));

		const data = await view.load();
		const node = await view.render(data);
		const map = findAll(node, n => n.tag == 'cbi-map')[0].map;
		check('form is over UCI package upnpd', map.config == 'upnpd');

		const main = map.sections.find(s => s.cls == env.form.NamedSection);
		check('settings: named section config of type upnpd', main && main.args[0] == 'config' && main.args[1] == 'upnpd');
		check('settings: tabs General, Advanced, Permission rules',
			JSON.stringify(main.tabs) == JSON.stringify(['general', 'advanced', 'rules']), main.tabs.join(','));
		const names = main.options.map(o => o.name);
		const missing = UPNPD_OPTIONS.filter(o => !names.includes(o));
		check('settings: every upnpd option is in the form', missing.length == 0, 'missing ' + missing.join(', '));

		const rules = main.options.find(o => o.cls == env.form.SectionValue);
		const grid = rules && rules.subsection;
		check('rules: a sortable, anonymous grid over perm_rule in the rules tab',
			rules && rules.tab == 'rules' && grid.cls == env.form.GridSection && grid.args[0] == 'perm_rule' &&
			grid.sortable === true && grid.anonymous === true && grid.addremove === true);
		const ruleNames = grid ? grid.options.map(o => o.name) : [];
		check('rules: every perm_rule option is a column',
			PERM_RULE_OPTIONS.every(o => ruleNames.includes(o)), ruleNames.join(','));

		const lan = main.options.find(o => o.name == 'internal_iface');
		check('internal_iface reads the space-separated option as a list',
			JSON.stringify(lan.cfgvalue('config')) == JSON.stringify(['lan', 'guest']));
		lan.write('config', ['lan', 'iot']);
		check('internal_iface writes one space-separated option (miniupnpd schema)',
			JSON.stringify(env.log.uciSet.pop()) == JSON.stringify(['upnpd', 'config', 'internal_iface', 'lan iot']));

		check('mappings are polled every 5 s', env.log.polls.length == 1 && env.log.polls[0][1] == 5);
		const [mapTable, pinTable] = env.log.tables;
		check('mappings table: one row per mapping', mapTable && mapTable.rows.length == 2);
		const r0 = mapTable.rows[0], r1 = mapTable.rows[1];
		check('mappings table: host name from getHostHints, unknown host otherwise',
			r0[0] == 'nas' && r1[0] == 'Unknown', r0[0] + ' / ' + r1[0]);
		check('mappings table: protocol, ports, addresses',
			r0[1] == 'TCP' && r0[2] == 8080 && r0[3] == '192.168.1.10:80' && r0[4] == 'any' && r1[4] == '198.51.100.9',
			JSON.stringify(r0.slice(1, 5)));
		check('mappings table: description HTML-escaped', r0[5] == 'web &#60;server&#62;', r0[5]);
		check('mappings table: origin labels', r0[6] == 'UPnP IGDv2' && r1[6] == 'PCP', r0[6] + ' / ' + r1[6]);
		check('mappings table: time left, permanent', r0[7] == '1h 0s' && r1[7] == 'Permanent', r0[7] + ' / ' + r1[7]);
		check('mappings table: traffic', r0[8] == '12 packets, 2.00 KiB', r0[8]);
		check('pinholes table: one row, IPv6 address in brackets',
			pinTable && pinTable.rows.length == 1 && pinTable.rows[0][3] == '[2001:db8:1::10]:22' && pinTable.rows[0][1] == 'nas',
			pinTable && JSON.stringify(pinTable.rows[0]));

		env.log.calls.length = 0;
		const del = r0[9];
		await del.attrs.click({ currentTarget: {} });
		const delCall = env.log.calls.find(c => c[0] == 'rupnpd/delete');
		check('Delete calls rupnpd delete {proto, external_port}',
			delCall && JSON.stringify(delCall[1]) == JSON.stringify({ proto: 'TCP', external_port: 8080 }),
			JSON.stringify(delCall));

		const statusText = text(node);
		check('status box shows the external address and counts',
			statusText.includes('203.0.113.7') && statusText.includes('2 (TCP 1, UDP 1; UPnP 1, NAT-PMP 0, PCP 1), 1 IPv6 pinholes'));
		const switchButtons = findAll(node, n => n.tag == 'button' && /^Switch (on|off)$/.test(text(n)));
		check('status box: one live switch per set parameter', switchButtons.length == 7, String(switchButtons.length));
	}

	// The settings page with the daemon not running.
	{
		const env = makeEnv({ 'rupnpd/status': 4, 'rupnpd/list': 4 }, uciData);
		const view = instantiate(path.join(viewDir, 'rupnpd/rupnpd.js'), env);
		const node = await view.render(await view.load());
		check('daemon not running: the page says so and shows empty tables',
			text(node).includes('not running') && env.log.tables[0].rows.length == 0);
	}

	// The status overview box.
	{
		const env = makeEnv(replies, uciData);
		const box = instantiate(path.join(viewDir, 'status/include/80_rupnpd.js'), env);
		check('80_rupnpd.js: include with title and render()', typeof box.render == 'function' && typeof box.title == 'string');
		for (const [obj, method] of env.log.declared)
			check('ACL grants ' + obj + '/' + method + ' (80_rupnpd.js)', granted(obj, method));
		const node = box.render(await box.load());
		check('status box: one row per mapping', env.log.tables[0].rows.length == 2 && env.log.tables[0].rows[0][0] == 'nas');

		const off = makeEnv({}, uciData);
		const box2 = instantiate(path.join(viewDir, 'status/include/80_rupnpd.js'), off);
		check('status box: nothing when the daemon is not running', box2.render(await box2.load()) === null);
	}

	console.log('LuCI tests: ' + passed + ' passed, ' + failed + ' failed');
	process.exit(failed ? 1 : 0);
}

main().catch(e => { console.log('FAIL LuCI tests crashed: ' + (e.stack || e)); process.exit(1); });

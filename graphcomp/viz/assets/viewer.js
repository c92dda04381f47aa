// graphcomp graph viewer: one self-contained page, no network.
// Layout: longest-path layering (sources pulled down next to their first consumer), barycentre
// ordering sweeps that keep name scopes together, then overlap-free placement near the
// neighbours' mean. Drawing: one canvas, only what is on screen, labels when large enough.
(function () {
  "use strict";

  var DATA = JSON.parse(document.getElementById("graph-data").textContent);
  var ROLES = DATA.roles;
  var ROLE_ORDER = Object.keys(ROLES);
  var LINE_HEIGHT = 14, PAD_X = 8, PAD_Y = 5, NODE_GAP = 18, LAYER_GAP = 34, PANEL_GAP = 120;
  var FONT = "12px system-ui, -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif";
  var FONT_BOLD = "600 " + FONT;
  var HIGHLIGHT = "#dc2626", MATCH = "#f59e0b";

  var canvas = document.getElementById("canvas");
  var ctx = canvas.getContext("2d");
  var minimap = document.getElementById("minimap");
  var MINIMAP_W = 180, MINIMAP_H = 140;
  var $ = function (id) { return document.getElementById(id); };

  // ---- model ---------------------------------------------------------------------------------
  var bodyScopes = [];       // the scopes holding loop bodies: drawn collapsed at first
  // A graph's nodes (a body's nodes, `id` prefixed with its loop's), each loop's or branch's
  // body graphs placed before it under a scope of their own, nested as the bodies nest; a body's
  // outputs are tied to its loop node, so its cluster is drawn above it.
  function graphNodes(graph, panelIndex, prefix, scope, out) {
    var nodes = graph.nodes.map(function (record) {
      var node = Object.assign({}, record);
      node.id = prefix ? prefix + record.id : record.id;
      node.scope = [scope, record.scope].filter(Boolean).join("/");
      node.panel = panelIndex;
      node.key = panelIndex + ":" + node.id;
      node.inputs = [];
      node.consumers = [];
      node.ties = [];
      return node;
    });
    graph.links.forEach(function (link) {
      var source = nodes[link.source], target = nodes[link.target];
      target.inputs.push({ node: source, position: link.key });
      if (source.consumers.indexOf(target) < 0) source.consumers.push(target);
    });
    nodes.forEach(function (node) {
      (node.bodies || []).forEach(function (body, b) {
        var bodyScope = [node.scope, node.op + " #" + node.id + " " + body.label].filter(Boolean).join("/");
        bodyScopes.push(bodyScope);
        graphNodes(body.graph, panelIndex, node.id + "." + b + ".", bodyScope, out).forEach(function (inner) {
          if (inner.output) node.ties.push({ node: inner });
        });
      });
      node.order = out.length;
      out.push(node);
    });
    return nodes;
  }

  var panels = DATA.panels.map(function (panel, panelIndex) {
    var nodes = [];
    graphNodes(panel.graph, panelIndex, "", "", nodes);
    nodes.forEach(function (node) {
      node.inputs.sort(function (a, b) { return a.position - b.position; });
      node.searchText = [
        "#" + node.id, node.op, node.name || "", node.caption || "", node.scope, node.dtype,
        shapeText(node.shape), node.expression || "", node.value || "", node.role,
        node.source ? node.source.code + " " + baseName(node.source.file) + ":" + node.source.line : ""
      ].join(" \u0001 ").toLowerCase();
    });
    return { title: panel.title, nodes: nodes };
  });
  var allNodes = [].concat.apply([], panels.map(function (p) { return p.nodes; }));

  var state = {
    collapsed: new Set((DATA.collapsed || []).concat(bodyScopes)),
    hiddenRoles: new Set(),
    selected: null,          // a vertex key
    trace: null,             // Set of vertex keys (ancestors or descendants of the selection)
    matches: [],             // vertex keys matching the search, in order
    matchSet: new Set(),
    matchIndex: -1,
    view: { x: 0, y: 0, k: 1 }
  };
  var layout = null;         // { vertices: Map key -> vertex, edges, clusters, titles, bounds }

  function shapeText(shape) {
    var inner = shape.map(function (d) { return d === null ? "?" : String(d); }).join(", ");
    return shape.length === 1 ? "(" + inner + ",)" : "(" + inner + ")";
  }
  function baseName(path) { return String(path).split(/[\\/]/).pop(); }
  function scopePrefixes(scope) {
    if (!scope) return [];
    var parts = scope.split("/"), out = [];
    for (var i = 0; i < parts.length; i++) out.push(parts.slice(0, i + 1).join("/"));
    return out;
  }
  function parentScope(scope) { var i = scope.lastIndexOf("/"); return i < 0 ? "" : scope.slice(0, i); }
  function lastPart(scope) { return scope.slice(scope.lastIndexOf("/") + 1); }
  function collapsedScopeOf(node) {
    var prefixes = scopePrefixes(node.scope);
    for (var i = 0; i < prefixes.length; i++) if (state.collapsed.has(prefixes[i])) return prefixes[i];
    return null;
  }
  function vertexKeyOf(node) {
    if (state.hiddenRoles.has(node.role)) return null;
    var scope = collapsedScopeOf(node);
    return scope === null ? node.key : node.panel + ":scope:" + scope;
  }

  var allScopes = (function () {
    var counts = new Map();
    allNodes.forEach(function (node) {
      scopePrefixes(node.scope).forEach(function (s) { counts.set(s, (counts.get(s) || 0) + 1); });
    });
    var natural = new Intl.Collator(undefined, { numeric: true });
    return Array.from(counts.keys()).sort(natural.compare).map(function (s) { return { path: s, count: counts.get(s) }; });
  })();

  // ---- text measuring ------------------------------------------------------------------------
  var widthCache = new Map();
  function textWidth(text, bold) {
    var key = (bold ? "b" : "r") + text;
    var width = widthCache.get(key);
    if (width === undefined) {
      ctx.font = bold ? FONT_BOLD : FONT;
      width = ctx.measureText(text).width;
      widthCache.set(key, width);
    }
    return width;
  }

  // ---- building the visible graph and laying it out -------------------------------------------
  function buildVisible(panel, panelIndex) {
    var vertices = new Map(), order = [];
    panel.nodes.forEach(function (node) {
      var key = vertexKeyOf(node);
      if (key === null) return;
      var vertex = vertices.get(key);
      if (!vertex) {
        vertex = { key: key, panel: panelIndex, members: [], inputs: [], outputs: [], position: node.order };
        if (key === node.key) {
          vertex.node = node;
          vertex.lines = node.label;
          vertex.role = node.role;
        } else {
          vertex.scope = key.slice(key.indexOf(":scope:") + 7);
        }
        vertices.set(key, vertex);
        order.push(vertex);
      }
      vertex.members.push(node);
    });
    order.forEach(function (vertex) {
      if (vertex.scope !== undefined) {
        var roles = {};
        vertex.members.forEach(function (n) { roles[n.role] = (roles[n.role] || 0) + 1; });
        vertex.roleCounts = roles;
        vertex.role = ROLE_ORDER.filter(function (r) { return roles[r]; }).pop();
        vertex.lines = ["\u25B8 " + lastPart(vertex.scope), vertex.members.length + " nodes (collapsed)"];
      }
      var width = 0;
      vertex.lines.forEach(function (line, i) { width = Math.max(width, textWidth(line, i === 0)); });
      vertex.w = Math.max(44, Math.ceil(width) + 2 * PAD_X);
      vertex.h = vertex.lines.length * LINE_HEIGHT + 2 * PAD_Y;
    });
    var edges = [], seen = new Set();
    order.forEach(function (vertex) {
      vertex.members.forEach(function (node) {
        node.inputs.concat(node.ties).forEach(function (input) {
          var sourceKey = vertexKeyOf(input.node);
          if (sourceKey === null || sourceKey === vertex.key) return;
          var id = sourceKey + ">" + vertex.key;
          if (seen.has(id)) return;
          seen.add(id);
          var source = vertices.get(sourceKey);
          var edge = { source: source, target: vertex };
          edges.push(edge);
          source.outputs.push(edge);
          vertex.inputs.push(edge);
        });
      });
    });
    return { vertices: order, edges: edges };
  }

  function assignLayers(vertices) {
    // An edge counts for layering only when it goes forward in topological position; a collapsed
    // scope can create cycles (scope -> outside node -> scope), whose back edges are ignored.
    vertices.sort(function (a, b) { return a.position - b.position; });
    vertices.forEach(function (v) {
      var layer = 0;
      v.inputs.forEach(function (e) { if (e.source.position < v.position) layer = Math.max(layer, e.source.layer + 1); });
      v.layer = layer;
    });
    // Then pull every vertex down to just above its first consumer (leaves and derivative nodes
    // that read forward values then sit next to where they are used, not at the top).
    for (var i = vertices.length - 1; i >= 0; i--) {
      var v = vertices[i];
      if (!v.outputs.length) continue;
      var lowest = Infinity;
      v.outputs.forEach(function (e) { if (e.target.position > v.position) lowest = Math.min(lowest, e.target.layer); });
      if (lowest !== Infinity) v.layer = Math.max(v.layer, lowest - 1);
    }
    var layers = [];
    vertices.forEach(function (v) { (layers[v.layer] = layers[v.layer] || []).push(v); });
    for (var l = 0; l < layers.length; l++) layers[l] = layers[l] || [];
    return layers;
  }

  function scopeKeyOf(v) { return v.node ? v.node.scope : parentScope(v.scope); }

  function separation(a, b) {
    // Members of different name scopes keep extra room for the scope outlines between them.
    return (a.w + b.w) / 2 + NODE_GAP + (scopeKeyOf(a) === scopeKeyOf(b) ? 0 : 18);
  }

  function packLayer(layer) {
    var x = 0;
    layer.forEach(function (v, i) { v.order = i; x = i ? x + separation(layer[i - 1], v) : 0; v.x = x; });
    var middle = x / 2;
    layer.forEach(function (v) { v.x -= middle; });
  }

  function derivativeOrder(v) {
    if (v.derivativeOrder === undefined) {
      v.derivativeOrder = v.members.reduce(function (low, n) { return Math.min(low, n.derivative_order); }, Infinity);
    }
    return v.derivativeOrder;
  }
  function edgeWeight(e) {
    // Edges within the forward graph (or within one derivative order) pull hardest, so each
    // stays a readable shape; edges from the gradient back into the forward graph pull little.
    return derivativeOrder(e.source) === derivativeOrder(e.target) ? 1 : 0.15;
  }

  function sortLayer(layer, useInputs) {
    layer.forEach(function (v) {
      var sum = 0, count = 0;
      (useInputs ? v.inputs : v.outputs).forEach(function (e) {
        var other = useInputs ? e.source : e.target, weight = edgeWeight(e);
        sum += weight * other.x; count += weight;
      });
      v.bary = count ? sum / count : v.x;
    });
    // Keep each name scope's members next to each other at every nesting level: compare the
    // mean barycentre of the groups two vertices belong to, outermost scope first.
    var depth = 1, groups = new Map();
    layer.forEach(function (v) { v.groups = scopePrefixes(scopeKeyOf(v)); depth = Math.max(depth, v.groups.length + 1); });
    layer.forEach(function (v) {
      v.groupKeys = [];
      for (var d = 0; d < depth; d++) {
        var key = d < v.groups.length ? "s:" + v.groups[d] : "v:" + v.key;
        v.groupKeys.push(key);
        var g = groups.get(key) || { sum: 0, count: 0 };
        g.sum += v.bary; g.count++;
        groups.set(key, g);
      }
    });
    var mean = function (key) { var g = groups.get(key); return g.sum / g.count; };
    layer.sort(function (a, b) {
      for (var d = 0; d < depth; d++) {
        var ka = a.groupKeys[d], kb = b.groupKeys[d];
        if (ka === kb) continue;
        var difference = mean(ka) - mean(kb);
        if (difference) return difference;
        return ka < kb ? -1 : 1;
      }
      return a.bary - b.bary || a.position - b.position;
    });
    packLayer(layer);
  }

  function placeLayer(layer) {
    // Move each vertex towards its neighbours' mean x without overlaps: the mean of a left-to-right
    // and a right-to-left pass satisfies the spacing constraints too (they are linear).
    var n = layer.length;
    if (!n) return;
    var desired = layer.map(function (v) {
      var sum = 0, count = 0;
      v.inputs.forEach(function (e) { var w = edgeWeight(e); sum += w * e.source.x; count += w; });
      v.outputs.forEach(function (e) { var w = edgeWeight(e); sum += w * e.target.x; count += w; });
      return count ? sum / count : v.x;
    });
    var left = new Array(n), right = new Array(n);
    for (var i = 0; i < n; i++) {
      left[i] = i ? Math.max(desired[i], left[i - 1] + separation(layer[i - 1], layer[i])) : desired[i];
    }
    for (var j = n - 1; j >= 0; j--) {
      right[j] = j < n - 1 ? Math.min(desired[j], right[j + 1] - separation(layer[j], layer[j + 1])) : desired[j];
    }
    layer.forEach(function (v, k) { v.x = (left[k] + right[k]) / 2; });
  }

  function layoutPanel(panel, panelIndex) {
    var visible = buildVisible(panel, panelIndex);
    var layers = assignLayers(visible.vertices);
    layers.forEach(packLayer);
    for (var sweep = 0; sweep < 4; sweep++) {
      if (sweep % 2 === 0) for (var a = 1; a < layers.length; a++) sortLayer(layers[a], true);
      else for (var b = layers.length - 2; b >= 0; b--) sortLayer(layers[b], false);
    }
    for (var round = 0; round < 4; round++) {
      layers.forEach(placeLayer);
    }
    var y = 0;
    layers.forEach(function (layer) {
      var height = 0;
      layer.forEach(function (v) { height = Math.max(height, v.h); });
      layer.forEach(function (v) { v.y = y + height / 2; });
      y += height + LAYER_GAP;
    });
    return visible;
  }

  function computeLayout() {
    var vertices = new Map(), edges = [], clusters = [], titles = [];
    var offset = 0, bounds = { x0: Infinity, y0: Infinity, x1: -Infinity, y1: -Infinity };
    panels.forEach(function (panel, panelIndex) {
      var visible = layoutPanel(panel, panelIndex);
      var x0 = Infinity, x1 = -Infinity, y1 = 0;
      visible.vertices.forEach(function (v) { x0 = Math.min(x0, v.x - v.w / 2); x1 = Math.max(x1, v.x + v.w / 2); y1 = Math.max(y1, v.y + v.h / 2); });
      if (!visible.vertices.length) { x0 = 0; x1 = 200; }
      var shift = offset - x0;
      visible.vertices.forEach(function (v) { v.x += shift; vertices.set(v.key, v); });
      var panelClusters = scopeClusters(visible.vertices, panelIndex);
      // Everything of the panel (scope outlines included) starts below its title.
      var highest = 0;
      panelClusters.forEach(function (c) { highest = Math.min(highest, c.y0); });
      var dy = (panel.title ? 36 : 0) - highest;
      visible.vertices.forEach(function (v) { v.y += dy; });
      panelClusters.forEach(function (c) {
        c.points.forEach(function (p) { p[1] += dy; });
        c.y0 += dy; c.y1 += dy; c.labelY += dy;
      });
      edges = edges.concat(visible.edges);
      clusters = clusters.concat(panelClusters);
      if (panel.title) titles.push({ text: panel.title, x: offset, y: 12 });
      bounds.x0 = Math.min(bounds.x0, offset); bounds.x1 = Math.max(bounds.x1, offset + x1 - x0);
      bounds.y0 = Math.min(bounds.y0, 0); bounds.y1 = Math.max(bounds.y1, y1 + dy);
      offset += x1 - x0 + PANEL_GAP;
    });
    clusters.forEach(function (c) {
      bounds.x0 = Math.min(bounds.x0, c.x0); bounds.y0 = Math.min(bounds.y0, c.y0);
      bounds.x1 = Math.max(bounds.x1, c.x1); bounds.y1 = Math.max(bounds.y1, c.y1);
    });
    layout = { vertices: vertices, edges: edges, clusters: clusters, titles: titles, bounds: bounds };
    paintMinimapNodes();
  }

  // ---- overview --------------------------------------------------------------------------------
  var minimapNodes = null, minimapScale = 1, minimapOffset = { x: 0, y: 0 };
  function paintMinimapNodes() {
    // The vertices drawn once into an offscreen canvas; each frame adds only the view rectangle.
    var b = layout.bounds, w = Math.max(1, b.x1 - b.x0), h = Math.max(1, b.y1 - b.y0);
    minimapScale = Math.min((MINIMAP_W - 8) / w, (MINIMAP_H - 8) / h);
    minimapOffset = { x: (MINIMAP_W - w * minimapScale) / 2 - b.x0 * minimapScale,
                      y: (MINIMAP_H - h * minimapScale) / 2 - b.y0 * minimapScale };
    minimapNodes = document.createElement("canvas");
    minimapNodes.width = MINIMAP_W * dpr; minimapNodes.height = MINIMAP_H * dpr;
    var g = minimapNodes.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    layout.vertices.forEach(function (v) {
      g.fillStyle = ROLES[v.role].border;
      g.fillRect(minimapOffset.x + (v.x - v.w / 2) * minimapScale, minimapOffset.y + (v.y - v.h / 2) * minimapScale,
                 Math.max(1, v.w * minimapScale), Math.max(1, v.h * minimapScale));
    });
  }
  function drawMinimap() {
    var b = layout.bounds, k = state.view.k;
    var larger = (b.x1 - b.x0) * k > cssWidth * 1.05 || (b.y1 - b.y0) * k > cssHeight * 1.05;
    minimap.style.display = larger ? "block" : "none";
    if (!larger) return;
    if (minimap.width !== MINIMAP_W * dpr) { minimap.width = MINIMAP_W * dpr; minimap.height = MINIMAP_H * dpr; }
    var g = minimap.getContext("2d");
    g.setTransform(1, 0, 0, 1, 0, 0);
    g.clearRect(0, 0, minimap.width, minimap.height);
    g.drawImage(minimapNodes, 0, 0);
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    var lo = toWorld(0, 0), hi = toWorld(cssWidth, cssHeight);
    g.strokeStyle = HIGHLIGHT; g.lineWidth = 1.5;
    g.strokeRect(minimapOffset.x + lo.x * minimapScale, minimapOffset.y + lo.y * minimapScale,
                 Math.max(2, (hi.x - lo.x) * minimapScale), Math.max(2, (hi.y - lo.y) * minimapScale));
  }
  function minimapJump(event) {
    var rect = minimap.getBoundingClientRect();
    var wx = (event.clientX - rect.left - minimapOffset.x) / minimapScale;
    var wy = (event.clientY - rect.top - minimapOffset.y) / minimapScale;
    state.view.x = cssWidth / 2 - wx * state.view.k;
    state.view.y = cssHeight / 2 - wy * state.view.k;
    requestDraw();
  }

  function scopeClusters(vertices, panelIndex) {
    // The outline of every expanded scope: per layer, the span of its members (contiguous, since
    // layers are sorted by scope), joined top to bottom into one staircase polygon.
    var spans = new Map(), maxDepth = 0;
    vertices.forEach(function (v) {
      scopePrefixes(scopeKeyOf(v)).forEach(function (prefix) {
        var perLayer = spans.get(prefix) || new Map();
        var span = perLayer.get(v.layer) || { x0: Infinity, x1: -Infinity, y0: Infinity, y1: -Infinity };
        span.x0 = Math.min(span.x0, v.x - v.w / 2); span.x1 = Math.max(span.x1, v.x + v.w / 2);
        span.y0 = Math.min(span.y0, v.y - v.h / 2); span.y1 = Math.max(span.y1, v.y + v.h / 2);
        perLayer.set(v.layer, span);
        spans.set(prefix, perLayer);
      });
    });
    spans.forEach(function (perLayer, scope) { maxDepth = Math.max(maxDepth, scope.split("/").length); });
    // A scope whose nested scopes start on its own first row leaves room above for their names
    // too, so that each name stands on a line of its own.
    var firstLayer = new Map();
    spans.forEach(function (perLayer, scope) { firstLayer.set(scope, Math.min.apply(null, Array.from(perLayer.keys()))); });
    function namesBelow(scope) {
      var most = 0, depth = scope.split("/").length;
      spans.forEach(function (perLayer, inner) {
        if (inner.indexOf(scope + "/") === 0 && firstLayer.get(inner) === firstLayer.get(scope))
          most = Math.max(most, inner.split("/").length - depth);
      });
      return most;
    }
    var clusters = [];
    spans.forEach(function (perLayer, scope) {
      var depth = scope.split("/").length, pad = 7 + 7 * (maxDepth - depth);
      var rows = Array.from(perLayer.keys()).sort(function (a, b) { return a - b; }).map(function (layer) {
        var span = perLayer.get(layer);
        return { x0: span.x0 - pad, x1: span.x1 + pad, y0: span.y0 - pad, y1: span.y1 + pad };
      });
      rows[0].y0 -= 16 * (1 + namesBelow(scope));  // room for the scope's name (and its inner ones')
      for (var i = 0; i + 1 < rows.length; i++) {
        var middle = (rows[i].y1 + rows[i + 1].y0) / 2;
        rows[i].y1 = middle; rows[i + 1].y0 = middle;
      }
      var points = [];
      rows.forEach(function (r) { points.push([r.x1, r.y0], [r.x1, r.y1]); });
      for (var j = rows.length - 1; j >= 0; j--) points.push([rows[j].x0, rows[j].y1], [rows[j].x0, rows[j].y0]);
      clusters.push({
        scope: scope, panel: panelIndex, depth: depth, points: points,
        labelX: rows[0].x0 + 6, labelY: rows[0].y0 + 3,
        x0: Math.min.apply(null, rows.map(function (r) { return r.x0; })),
        x1: Math.max.apply(null, rows.map(function (r) { return r.x1; })),
        y0: rows[0].y0, y1: rows[rows.length - 1].y1
      });
    });
    return clusters.sort(function (a, b) { return a.depth - b.depth || (a.scope < b.scope ? -1 : 1); });
  }

  // ---- view ------------------------------------------------------------------------------------
  var dpr = 1, cssWidth = 1, cssHeight = 1;
  function resize() {
    var rect = canvas.getBoundingClientRect();
    dpr = window.devicePixelRatio || 1;
    cssWidth = Math.max(1, rect.width); cssHeight = Math.max(1, rect.height);
    canvas.width = Math.round(cssWidth * dpr); canvas.height = Math.round(cssHeight * dpr);
    requestDraw();
  }
  function fit(readable) {
    // The whole graph in the window; `readable` instead fits the width at a zoom where labels
    // can be read (the top of a tall graph first) when the whole graph would be too small.
    var b = layout.bounds, margin = 24;
    var w = Math.max(1, b.x1 - b.x0), h = Math.max(1, b.y1 - b.y0);
    var byWidth = (cssWidth - 2 * margin) / w;
    var k = Math.min(byWidth, (cssHeight - 2 * margin) / h, 1.5);
    if (readable && k < 0.6 && Math.min(byWidth, 1) >= 0.6) k = Math.min(byWidth, 1);
    state.view.k = k;
    state.view.x = (cssWidth - w * k) / 2 - b.x0 * k;
    state.view.y = Math.max(margin, (cssHeight - h * k) / 2) - b.y0 * k;
    requestDraw();
  }
  function centerOn(vertex, zoomIn) {
    var view = state.view;
    if (zoomIn && view.k < 0.8) view.k = 1;
    view.x = cssWidth / 2 - vertex.x * view.k;
    view.y = cssHeight / 2 - vertex.y * view.k;
    requestDraw();
  }
  function toWorld(px, py) { return { x: (px - state.view.x) / state.view.k, y: (py - state.view.y) / state.view.k }; }

  // ---- drawing -----------------------------------------------------------------------------------
  var drawPending = false;
  function requestDraw() {
    if (drawPending) return;
    drawPending = true;
    requestAnimationFrame(function () { drawPending = false; draw(); });
  }

  function roundedRect(x, y, w, h, r) {
    ctx.beginPath();
    ctx.moveTo(x + r, y);
    ctx.arcTo(x + w, y, x + w, y + h, r);
    ctx.arcTo(x + w, y + h, x, y + h, r);
    ctx.arcTo(x, y + h, x, y, r);
    ctx.arcTo(x, y, x + w, y, r);
    ctx.closePath();
  }

  function dimmed(vertex) {
    if (vertex.key === state.selected) return false;
    if (state.trace) return !state.trace.has(vertex.key);
    if (state.matchSet.size) return !state.matchSet.has(vertex.key);
    return false;
  }

  function draw() {
    var view = state.view, k = view.k;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    ctx.clearRect(0, 0, cssWidth, cssHeight);
    ctx.fillStyle = "#ffffff";
    ctx.fillRect(0, 0, cssWidth, cssHeight);
    ctx.setTransform(dpr * k, 0, 0, dpr * k, dpr * view.x, dpr * view.y);
    var lo = toWorld(0, 0), hi = toWorld(cssWidth, cssHeight);
    var onScreen = function (x0, y0, x1, y1) { return x1 >= lo.x && x0 <= hi.x && y1 >= lo.y && y0 <= hi.y; };
    var labels = k * 12 >= 5;

    layout.titles.forEach(function (t) {
      ctx.font = "600 16px system-ui, sans-serif"; ctx.fillStyle = "#374151"; ctx.textBaseline = "middle";
      ctx.fillText(t.text, t.x, t.y);
    });
    layout.clusters.forEach(function (c) {
      if (!onScreen(c.x0, c.y0, c.x1, c.y1)) return;
      ctx.beginPath();
      c.points.forEach(function (p, i) { if (i) ctx.lineTo(p[0], p[1]); else ctx.moveTo(p[0], p[1]); });
      ctx.closePath();
      ctx.fillStyle = c.depth % 2 ? "rgba(243,244,246,0.55)" : "rgba(229,231,235,0.45)";
      ctx.fill();
      ctx.setLineDash([5, 4]); ctx.lineWidth = 1 / Math.max(k, 0.5); ctx.strokeStyle = "#9ca3af"; ctx.stroke(); ctx.setLineDash([]);
      if (labels) {
        ctx.font = FONT_BOLD; ctx.fillStyle = "#4b5563"; ctx.textBaseline = "top";
        ctx.fillText("\u25BE " + lastPart(c.scope), c.labelX, c.labelY);
      }
    });

    var selected = state.selected && layout.vertices.get(state.selected);
    layout.edges.forEach(function (e) {
      var s = e.source, t = e.target;
      var x0 = s.x, y0 = s.y + s.h / 2, x1 = t.x, y1 = t.y - t.h / 2;
      if (!onScreen(Math.min(x0, x1), Math.min(y0, y1), Math.max(x0, x1), Math.max(y0, y1))) return;
      var touching = selected && (s === selected || t === selected);
      var long = Math.abs(t.layer - s.layer) > 3 || s.panel !== t.panel;
      // A long edge passing through the window with neither end in it is clutter: skip it.
      if (long && !touching && !(onScreen(x0, y0, x0, y0) || onScreen(x1, y1, x1, y1))) return;
      var faded = !touching && (dimmed(s) || dimmed(t));
      var derivative = t.role === "first_derivative" || t.role === "second_derivative";
      ctx.strokeStyle = touching ? HIGHLIGHT : derivative ? ROLES[t.role].border : "#6b7280";
      // Long edges (a gradient reading a forward value far above) stay faint unless selected.
      ctx.globalAlpha = faded ? 0.12 : touching ? 1 : long ? 0.3 : 0.75;
      ctx.lineWidth = (touching ? 2.2 : 1) / Math.max(k, 0.35);
      var bend = Math.max(20, Math.abs(y1 - y0) / 2);
      if (y1 < y0) bend = 60;  // a back edge (only around collapsed scopes)
      ctx.beginPath();
      ctx.moveTo(x0, y0);
      ctx.bezierCurveTo(x0, y0 + bend, x1, y1 - bend, x1, y1);
      ctx.stroke();
      if (k > 0.3) {
        ctx.beginPath();
        ctx.moveTo(x1, y1); ctx.lineTo(x1 - 4, y1 - 7); ctx.lineTo(x1 + 4, y1 - 7); ctx.closePath();
        ctx.fillStyle = ctx.strokeStyle; ctx.fill();
      }
    });
    ctx.globalAlpha = 1;

    var tiny = 3 / k;  // zoomed far out, a node is still at least a 3-pixel dot
    layout.vertices.forEach(function (v) {
      var x = v.x - v.w / 2, y = v.y - v.h / 2;
      if (!onScreen(x - 4, y - 4, x + v.w + 4, y + v.h + 4)) return;
      if (v.h < tiny) {
        ctx.globalAlpha = dimmed(v) ? 0.2 : 1;
        ctx.fillStyle = state.selected === v.key ? HIGHLIGHT : state.matchSet.has(v.key) ? MATCH : ROLES[v.role].border;
        ctx.fillRect(x, v.y - tiny / 2, Math.max(v.w, tiny), tiny);
        return;
      }
      drawVertex(v, x, y, labels);
    });
    ctx.globalAlpha = 1;
    drawMinimap();
  }

  function drawVertex(v, x, y, labels) {
    var style = ROLES[v.role], k = state.view.k;
    ctx.globalAlpha = dimmed(v) ? 0.2 : 1;
    var radius = v.role === "placeholder" ? v.h / 2 : v.role === "variable" ? 2 : 6;
    if (v.scope !== undefined) {
      // a collapsed scope: a stacked box
      roundedRect(x + 4, y - 4, v.w, v.h, 6); ctx.fillStyle = "#e5e7eb"; ctx.fill();
      ctx.lineWidth = 1 / Math.max(k, 0.5); ctx.strokeStyle = "#9ca3af"; ctx.stroke();
    }
    roundedRect(x, y, v.w, v.h, Math.min(radius, v.h / 2));
    ctx.fillStyle = v.scope !== undefined ? "#f3f4f6" : style.fill;
    ctx.fill();
    var order = v.node ? v.node.derivative_order : 0;
    ctx.setLineDash(order === 1 ? [5, 3] : order >= 2 ? [1.5, 2.5] : []);
    ctx.lineWidth = (v.scope !== undefined || order >= 2 ? 2 : 1.2) / Math.max(k, 0.5);
    ctx.strokeStyle = style.border;
    ctx.stroke();
    ctx.setLineDash([]);
    if (v.node && v.node.output) {
      roundedRect(x - 3, y - 3, v.w + 6, v.h + 6, Math.min(radius + 3, v.h / 2 + 3));
      ctx.lineWidth = 1.2 / Math.max(k, 0.5); ctx.stroke();
    }
    if (v.role === "fused") {
      ctx.fillStyle = style.border;
      ctx.fillRect(x, y, 4, v.h);
    }
    if (state.matchSet.has(v.key)) {
      roundedRect(x - 5, y - 5, v.w + 10, v.h + 10, 8);
      ctx.lineWidth = 3 / Math.max(k, 0.5); ctx.strokeStyle = MATCH; ctx.stroke();
    }
    if (state.selected === v.key) {
      roundedRect(x - 4, y - 4, v.w + 8, v.h + 8, 8);
      ctx.lineWidth = 3 / Math.max(k, 0.4); ctx.strokeStyle = HIGHLIGHT; ctx.stroke();
    }
    if (labels) {
      ctx.fillStyle = "#111827"; ctx.textBaseline = "middle"; ctx.textAlign = "center";
      v.lines.forEach(function (line, i) {
        ctx.font = i === 0 ? FONT_BOLD : FONT;
        ctx.fillStyle = i === 0 ? "#111827" : "#374151";
        ctx.fillText(line, v.x, y + PAD_Y + LINE_HEIGHT * (i + 0.5));
      });
      ctx.textAlign = "start";
      if (v.node && v.node.new) {
        ctx.font = "600 10px system-ui, sans-serif"; ctx.fillStyle = "#b91c1c";
        ctx.fillText("new", x + v.w + 3, y + 6);
      }
    }
  }

  // ---- hit testing ---------------------------------------------------------------------------
  function vertexAt(px, py) {
    var p = toWorld(px, py), found = null;
    layout.vertices.forEach(function (v) {
      if (Math.abs(p.x - v.x) <= v.w / 2 + 2 && Math.abs(p.y - v.y) <= v.h / 2 + 2) found = v;
    });
    return found;
  }
  function clusterLabelAt(px, py) {
    var p = toWorld(px, py), found = null;
    layout.clusters.forEach(function (c) {
      if (p.x >= c.labelX - 4 && p.x <= c.labelX + 20 + textWidth(lastPart(c.scope), true) && p.y >= c.labelY - 2 && p.y <= c.labelY + 16) found = c;
    });
    return found;
  }

  // ---- details panel -----------------------------------------------------------------------------
  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (key) {
      if (key === "text") node.textContent = attrs[key];
      else if (key === "onclick") node.addEventListener("click", attrs[key]);
      else node.setAttribute(key, attrs[key]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(typeof child === "string" ? document.createTextNode(child) : child); });
    return node;
  }
  function nodeLink(node, prefix) {
    var text = (prefix || "") + "#" + node.id + " " + (node.name ? node.name + ": " : "") + node.op + " " + shapeText(node.shape) + " " + node.dtype;
    return el("a", { "class": "node-link", text: text, "data-node": node.key, onclick: function () { revealNode(node); } });
  }
  function row(label, value) {
    return el("tr", {}, [el("td", { text: label }), typeof value === "string" ? el("td", { text: value }) : el("td", {}, [value])]);
  }
  function listOf(items, render) {
    if (!items.length) return el("span", { "class": "muted", text: "none" });
    var shown = items.slice(0, 200);
    var list = el("ul", {}, shown.map(function (item) { return el("li", {}, [render(item)]); }));
    if (items.length > shown.length) list.appendChild(el("li", { "class": "muted", text: "... and " + (items.length - shown.length) + " more" }));
    return list;
  }

  function showDetails() {
    var box = $("details");
    box.textContent = "";
    var vertex = state.selected && layout.vertices.get(state.selected);
    if (!vertex) {
      box.appendChild(el("span", { "class": "muted", text: "Click a node to see its op, shape, dtype, the line of code that built it, its inputs and its consumers." }));
      return;
    }
    if (vertex.scope !== undefined) return showScopeDetails(box, vertex);
    var node = vertex.node, style = ROLES[node.role];
    box.appendChild(el("div", { "class": "title" }, [
      "#" + node.id + " " + node.op + (node.name ? " '" + node.name + "'" : ""),
      el("span", { "class": "badge", text: style.title, style: "background:" + style.fill + ";border-color:" + style.border })
    ]));
    if (node.caption) box.appendChild(el("div", { text: node.caption }));
    var table = el("table");
    table.appendChild(row("op", node.op));
    table.appendChild(row("shape", shapeText(node.shape)));
    table.appendChild(row("dtype", node.dtype));
    if (node.scope) table.appendChild(row("scope", node.scope));
    table.appendChild(row("derivative", node.derivative_order === 0 ? "forward (order 0)" : "order " + node.derivative_order));
    if (node.output) table.appendChild(row("output", "yes"));
    if (node.new !== undefined) table.appendChild(row("in this panel", node.new ? "new (not in the previous panel)" : "also in the previous panel"));
    if (node.value !== null && node.value !== undefined) table.appendChild(row("value", el("code", { text: node.value })));
    Object.keys(node.attrs).forEach(function (key) { table.appendChild(row(key, el("code", { text: node.attrs[key] }))); });
    if (node.panel !== undefined && panels.length > 1) table.appendChild(row("panel", panels[node.panel].title));
    box.appendChild(table);
    if (node.expression) {
      box.appendChild(el("div", { "class": "muted", text: "fused expression (x0, x1, ... are the inputs below)" }));
      box.appendChild(el("pre", { text: node.expression }));
    }
    if (node.fused_members && node.fused_members.length) {
      box.appendChild(el("div", { "class": "muted", text: "replaces " + node.fused_members.length + " nodes" }));
      box.appendChild(el("pre", { text: node.fused_members.join("\n") }));
    }
    (node.bodies || []).forEach(function (body) { box.appendChild(bodyDetails(body)); });
    box.appendChild(el("div", { "class": "muted", text: "built at" }));
    if (node.source) {
      box.appendChild(el("div", {}, [el("code", { text: baseName(node.source.file) + ":" + node.source.line + " in " + node.source.function, title: node.source.file })]));
      if (node.source.code) box.appendChild(el("pre", { "class": "source", text: node.source.code }));
    } else {
      box.appendChild(el("div", { "class": "muted", text: "unknown" }));
    }
    box.appendChild(el("div", { "class": "muted", text: "inputs (" + node.inputs.length + ")" }));
    var inputName = node.expression ? function (p) { return "x" + p + " = "; } : function (p) { return "[" + p + "] "; };
    box.appendChild(listOf(node.inputs, function (input) { return nodeLink(input.node, inputName(input.position)); }));
    box.appendChild(el("div", { "class": "muted", text: "consumers (" + node.consumers.length + ")" }));
    box.appendChild(listOf(node.consumers, function (consumer) { return nodeLink(consumer); }));
    var actions = el("div", { "class": "actions" }, [
      el("button", { text: "Centre", onclick: function () { centerOn(vertex, true); } }),
      el("button", { text: "What it depends on", onclick: function () { traceFrom(vertex, true); } }),
      el("button", { text: "What depends on it", onclick: function () { traceFrom(vertex, false); } })
    ]);
    if (state.trace) actions.appendChild(el("button", { text: "Clear highlight", onclick: function () { state.trace = null; requestDraw(); } }));
    scopePrefixes(node.scope).slice(-1).forEach(function (scope) {
      actions.appendChild(el("button", { text: "Collapse scope " + lastPart(scope), onclick: function () { setCollapsed(scope, true); } }));
    });
    box.appendChild(actions);
  }

  // A loop's or branch's body graph: a collapsible list of its nodes (closed at first), each
  // with its inputs; the bodies of loops inside it nest the same way.
  function bodyDetails(body) {
    var nodes = body.graph.nodes, inputsOf = nodes.map(function () { return []; });
    body.graph.links.forEach(function (link) { inputsOf[link.target][link.key] = link.source; });
    var list = el("ol", { "class": "body-nodes", start: "0" });
    nodes.forEach(function (n) {
      var text = n.op + (n.name ? " '" + n.name + "'" : "") + " " + shapeText(n.shape) + " " + n.dtype;
      if (inputsOf[n.id].length) text += "  ← " + inputsOf[n.id].map(function (i) { return "#" + i; }).join(", ");
      if (n.output) text += "  (output)";
      var item = el("li", { text: text });
      (n.bodies || []).forEach(function (inner) { item.appendChild(bodyDetails(inner)); });
      list.appendChild(item);
    });
    return el("details", { "class": "body" }, [
      el("summary", { text: body.label + ": " + nodes.length + " nodes, " + body.inputs + " inputs, " + body.outputs + " outputs" }),
      list
    ]);
  }

  function showScopeDetails(box, vertex) {
    box.appendChild(el("div", { "class": "title", text: "name scope " + vertex.scope }));
    var table = el("table");
    table.appendChild(row("nodes", String(vertex.members.length)));
    ROLE_ORDER.forEach(function (role) { if (vertex.roleCounts[role]) table.appendChild(row(ROLES[role].title, String(vertex.roleCounts[role]))); });
    box.appendChild(table);
    var inside = new Set(vertex.members);
    var external = [], consumers = [];
    vertex.members.forEach(function (n) {
      n.inputs.forEach(function (i) { if (!inside.has(i.node) && external.indexOf(i.node) < 0) external.push(i.node); });
      n.consumers.forEach(function (c) { if (!inside.has(c) && consumers.indexOf(c) < 0) consumers.push(c); });
    });
    box.appendChild(el("div", { "class": "actions" }, [el("button", { text: "Expand", onclick: function () { setCollapsed(vertex.scope, false); } })]));
    box.appendChild(el("div", { "class": "muted", text: "members" }));
    box.appendChild(listOf(vertex.members, function (n) { return nodeLink(n); }));
    box.appendChild(el("div", { "class": "muted", text: "inputs from outside (" + external.length + ")" }));
    box.appendChild(listOf(external, function (n) { return nodeLink(n); }));
    box.appendChild(el("div", { "class": "muted", text: "consumers outside (" + consumers.length + ")" }));
    box.appendChild(listOf(consumers, function (n) { return nodeLink(n); }));
  }

  function traceFrom(vertex, upstream) {
    var seen = new Set([vertex.key]), stack = [vertex];
    while (stack.length) {
      var v = stack.pop();
      (upstream ? v.inputs : v.outputs).forEach(function (e) {
        var other = upstream ? e.source : e.target;
        if (!seen.has(other.key)) { seen.add(other.key); stack.push(other); }
      });
    }
    state.trace = seen;
    showDetails();
    requestDraw();
  }

  // ---- state changes -------------------------------------------------------------------------
  function relayout(keepView) {
    var view = Object.assign({}, state.view);
    computeLayout();
    if (state.selected && !layout.vertices.has(state.selected)) state.selected = null;
    state.trace = null;
    runSearch(false);
    renderScopes();
    renderLegend();
    updateStats();
    if (keepView) { state.view = view; requestDraw(); } else fit(true);
    showDetails();
  }
  function setCollapsed(scope, collapsed) {
    if (collapsed) state.collapsed.add(scope); else state.collapsed.delete(scope);
    relayout(true);
    if (collapsed) {
      var box = Array.from(layout.vertices.values()).filter(function (v) { return v.scope === scope; })[0];
      if (box) select(box.key, false);
    }
  }
  function select(key, center) {
    state.selected = key;
    var vertex = key && layout.vertices.get(key);
    if (vertex && center) centerOn(vertex, true);
    showDetails();
    requestDraw();
  }
  function revealNode(node) {
    // Make a node visible (expand its scopes, show its role) and select it.
    var changed = false;
    scopePrefixes(node.scope).forEach(function (s) { if (state.collapsed.delete(s)) changed = true; });
    if (state.hiddenRoles.delete(node.role)) changed = true;
    if (changed) relayout(true);
    select(vertexKeyOf(node), true);
  }

  // ---- search --------------------------------------------------------------------------------
  function runSearch(jump) {
    var query = $("search").value.trim().toLowerCase();
    state.matches = []; state.matchSet = new Set(); state.matchIndex = -1;
    if (query) {
      allNodes.forEach(function (node) {
        if (node.searchText.indexOf(query) < 0) return;
        var key = vertexKeyOf(node);
        if (key !== null && !state.matchSet.has(key)) { state.matchSet.add(key); state.matches.push(key); }
      });
    }
    $("search-count").textContent = query ? (state.matches.length ? state.matches.length + " found" : "no match") : "";
    if (jump && state.matches.length) stepMatch(1);
    requestDraw();
  }
  function stepMatch(direction) {
    if (!state.matches.length) return;
    var n = state.matches.length;
    state.matchIndex = ((state.matchIndex + direction) % n + n) % n;
    $("search-count").textContent = (state.matchIndex + 1) + " / " + n;
    select(state.matches[state.matchIndex], true);
  }

  // ---- side lists ------------------------------------------------------------------------------
  function renderLegend() {
    var counts = {};
    allNodes.forEach(function (n) { counts[n.role] = (counts[n.role] || 0) + 1; });
    var box = $("legend");
    box.textContent = "";
    ROLE_ORDER.forEach(function (role) {
      if (!counts[role]) return;
      var input = el("input", { type: "checkbox", "data-role": role });
      input.checked = !state.hiddenRoles.has(role);
      input.addEventListener("change", function () {
        if (input.checked) state.hiddenRoles.delete(role); else state.hiddenRoles.add(role);
        relayout(false);
      });
      var dash = role === "first_derivative" ? "dashed" : role === "second_derivative" ? "dotted" : "solid";
      box.appendChild(el("label", {}, [input,
        el("span", { "class": "swatch", style: "background:" + ROLES[role].fill + ";border-color:" + ROLES[role].border + ";border-style:" + dash }),
        el("span", { text: ROLES[role].title }), el("span", { "class": "muted", text: "(" + counts[role] + ")" })]));
    });
  }
  function renderScopes() {
    var box = $("scopes");
    box.textContent = "";
    if (!allScopes.length) { box.appendChild(el("span", { "class": "muted", text: "none (build nodes inside gc.name_scope(...) to group them)" })); return; }
    allScopes.forEach(function (scope) {
      var input = el("input", { type: "checkbox", "data-scope": scope.path });
      input.checked = state.collapsed.has(scope.path);
      input.addEventListener("change", function () { setCollapsed(scope.path, input.checked); });
      var depth = scope.path.split("/").length - 1;
      box.appendChild(el("label", { style: "padding-left:" + (depth * 14) + "px" }, [input,
        el("span", { text: lastPart(scope.path) }), el("span", { "class": "count", text: String(scope.count) })]));
    });
    $("collapse-all").disabled = $("expand-all").disabled = !allScopes.length;
  }
  function updateStats() {
    var text = allNodes.length + " nodes";
    if (panels.length > 1) text = panels.map(function (p) { return p.nodes.length; }).join(" \u2192 ") + " nodes";
    if (layout.vertices.size !== allNodes.length) text += ", " + layout.vertices.size + " shown";
    $("stats").textContent = text;
  }

  // ---- events --------------------------------------------------------------------------------
  var drag = null;
  canvas.addEventListener("mousedown", function (event) {
    drag = { x: event.clientX, y: event.clientY, vx: state.view.x, vy: state.view.y, moved: false };
    canvas.focus();
  });
  window.addEventListener("mousemove", function (event) {
    if (!drag) return;
    var dx = event.clientX - drag.x, dy = event.clientY - drag.y;
    if (!drag.moved && Math.abs(dx) + Math.abs(dy) < 4) return;
    drag.moved = true;
    canvas.classList.add("panning");
    state.view.x = drag.vx + dx; state.view.y = drag.vy + dy;
    requestDraw();
  });
  window.addEventListener("mouseup", function (event) {
    if (!drag) return;
    var wasClick = !drag.moved;
    drag = null;
    canvas.classList.remove("panning");
    if (!wasClick) return;
    var rect = canvas.getBoundingClientRect();
    var px = event.clientX - rect.left, py = event.clientY - rect.top;
    var vertex = vertexAt(px, py);
    if (vertex) { select(vertex.key, false); return; }
    var cluster = clusterLabelAt(px, py);
    if (cluster) { setCollapsed(cluster.scope, true); return; }
    state.trace = null;
    select(null, false);
  });
  canvas.addEventListener("dblclick", function (event) {
    var rect = canvas.getBoundingClientRect();
    var vertex = vertexAt(event.clientX - rect.left, event.clientY - rect.top);
    if (!vertex) return;
    if (vertex.scope !== undefined) setCollapsed(vertex.scope, false);
    else if (vertex.node.scope) setCollapsed(vertex.node.scope, true);
  });
  canvas.addEventListener("wheel", function (event) {
    event.preventDefault();
    var rect = canvas.getBoundingClientRect();
    var px = event.clientX - rect.left, py = event.clientY - rect.top;
    var scale = event.deltaMode === 1 ? 0.05 : 0.0015;
    var factor = Math.exp(-event.deltaY * scale);
    var k = Math.min(8, Math.max(0.01, state.view.k * factor));
    factor = k / state.view.k;
    state.view.x = px - (px - state.view.x) * factor;
    state.view.y = py - (py - state.view.y) * factor;
    state.view.k = k;
    requestDraw();
  }, { passive: false });
  window.addEventListener("resize", resize);
  var minimapDrag = false;
  minimap.addEventListener("mousedown", function (event) { minimapDrag = true; minimapJump(event); event.stopPropagation(); });
  window.addEventListener("mousemove", function (event) { if (minimapDrag) minimapJump(event); });
  window.addEventListener("mouseup", function () { minimapDrag = false; });
  canvas.addEventListener("mousemove", function (event) {
    // A tooltip with what the node is and the line that built it, without clicking.
    if (drag) return;
    var rect = canvas.getBoundingClientRect();
    var v = vertexAt(event.clientX - rect.left, event.clientY - rect.top);
    var tip = "";
    if (v && v.node) {
      var n = v.node;
      tip = "#" + n.id + " " + n.op + " " + shapeText(n.shape) + " " + n.dtype +
        (n.source ? "\n" + baseName(n.source.file) + ":" + n.source.line + (n.source.code ? "  " + n.source.code : "") : "");
    } else if (v) {
      tip = "name scope " + v.scope + " (" + v.members.length + " nodes): double-click to expand";
    }
    if (canvas.title !== tip) canvas.title = tip;
  });
  $("search").addEventListener("input", function () { runSearch(false); });
  $("search").addEventListener("keydown", function (event) {
    if (event.key === "Enter") { event.preventDefault(); stepMatch(event.shiftKey ? -1 : 1); }
    if (event.key === "Escape") { $("search").value = ""; runSearch(false); canvas.focus(); }
  });
  $("search-next").addEventListener("click", function () { stepMatch(1); });
  $("search-prev").addEventListener("click", function () { stepMatch(-1); });
  $("fit").addEventListener("click", function () { fit(false); });
  $("collapse-all").addEventListener("click", function () {
    allScopes.forEach(function (s) { if (s.path.indexOf("/") < 0) state.collapsed.add(s.path); });
    relayout(false);
  });
  $("expand-all").addEventListener("click", function () { state.collapsed.clear(); relayout(false); });
  document.addEventListener("keydown", function (event) {
    if (event.target === $("search")) return;
    if (event.key === "/") { event.preventDefault(); $("search").focus(); }
    else if (event.key === "f") fit(false);
    else if (event.key === "Escape") { state.trace = null; $("search").value = ""; runSearch(false); select(null, false); }
    else if (event.key === "+" || event.key === "=") { state.view.k *= 1.25; requestDraw(); }
    else if (event.key === "-") { state.view.k /= 1.25; requestDraw(); }
    else if (event.key.indexOf("Arrow") === 0) {
      var step = 80;
      if (event.key === "ArrowUp") state.view.y += step;
      if (event.key === "ArrowDown") state.view.y -= step;
      if (event.key === "ArrowLeft") state.view.x += step;
      if (event.key === "ArrowRight") state.view.x -= step;
      event.preventDefault();
      requestDraw();
    }
  });

  // ---- start -------------------------------------------------------------------------------------
  $("title").textContent = DATA.title || "graphcomp graph";
  $("title").title = DATA.title || "";
  if (DATA.legend === false) { $("legend").hidden = true; $("legend-title").hidden = true; }
  resize();
  computeLayout();
  renderLegend();
  renderScopes();
  updateStats();
  fit(true);
  draw();

  // A small interface for scripts and tests: where a node is drawn, and what is selected.
  window.graphcompViewer = {
    nodeCount: allNodes.length,
    vertexCount: function () { return layout.vertices.size; },
    screenPosition: function (panel, id) {
      var node = panels[panel].nodes[id];
      var vertex = layout.vertices.get(vertexKeyOf(node));
      if (!vertex) return null;
      var rect = canvas.getBoundingClientRect();
      return { x: rect.left + state.view.x + vertex.x * state.view.k, y: rect.top + state.view.y + vertex.y * state.view.k };
    },
    reveal: function (panel, id) { revealNode(panels[panel].nodes[id]); },
    selected: function () { return state.selected; },
    layers: function () {
      var out = {};
      layout.vertices.forEach(function (v, key) { out[key] = { layer: v.layer, x: v.x, y: v.y, w: v.w, h: v.h }; });
      return out;
    },
    edges: function () { return layout.edges.map(function (e) { return [e.source.key, e.target.key]; }); },
    clusterLabels: function () { return layout.clusters.map(function (c) { return { scope: c.scope, x: c.labelX, y: c.labelY }; }); },
    setCollapsed: setCollapsed,
    search: function (text) { $("search").value = text; runSearch(true); return state.matches.length; }
  };
})();

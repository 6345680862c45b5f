"""GLSL sources of the renderer (OpenGL 3.3 core).

Three programs write the same three outputs: ``f_color`` (RGBA8, display RGB), ``f_depth`` (R32F, z-depth in
metres along the optical axis, 0 for the sky) and ``f_label`` (R8, label value / 255, see :mod:`.labels`).

* ``SKY``: a full-screen triangle on the far plane, drawn last: sky gradient, sun glow, clouds, stars.
* ``GROUND``: one large quad at ``z = 0``; the class at a point is read from an integer texture on the OSM
  raster grid (the class of largest bilinear weight among the 4 nearest texels, see
  :meth:`.scene.Scene.ground_label_at`) and turned into a procedural material.
* ``OBJECTS``: every other mesh (facades, roofs, trees, lamps, furniture, paint), one interleaved vertex buffer.

Every surface colour is a function of the world position and the condition only (Lambert lighting, no
specular, no view-dependent term but the fog), so two views of a point agree in colour up to fog.
"""

from __future__ import annotations

from .labels import GROUND_PRIORITY, label_id

__all__ = ["GROUND_FRAGMENT", "GROUND_VERTEX", "OBJECT_FRAGMENT", "OBJECT_VERTEX", "SKY_FRAGMENT", "SKY_VERTEX"]

#: Maximum number of street lamps lighting one frame (the nearest ones).
MAX_LAMPS = 16

_COMMON = """
#version 330
uniform vec3 u_cam_pos;
uniform vec3 u_cam_forward;
uniform vec3 u_sun_dir;
uniform vec3 u_sun_color;
uniform vec3 u_sky_light;
uniform vec3 u_ground_light;
uniform vec3 u_fog_color;
uniform float u_fog_density;
uniform float u_lamp_intensity;
uniform vec3 u_lamp_color;
uniform int u_num_lamps;
uniform vec3 u_lamps[MAX_LAMPS];
uniform float u_window_lit;
uniform vec3 u_window_color;
uniform float u_foliage;
uniform float u_exposure;

layout(location = 0) out vec4 f_color;
layout(location = 1) out float f_depth;
layout(location = 2) out float f_label;

float hash12(vec2 p) {
    vec3 p3 = fract(vec3(p.xyx) * 0.1031);
    p3 += dot(p3, p3.yzx + 33.33);
    return fract((p3.x + p3.y) * p3.z);
}
float hash13(vec3 p3) {
    p3 = fract(p3 * 0.1031);
    p3 += dot(p3, p3.zyx + 31.32);
    return fract((p3.x + p3.y) * p3.z);
}
float vnoise(vec2 p) {
    vec2 i = floor(p);
    vec2 f = fract(p);
    vec2 u = f * f * (3.0 - 2.0 * f);
    return mix(mix(hash12(i), hash12(i + vec2(1.0, 0.0)), u.x),
               mix(hash12(i + vec2(0.0, 1.0)), hash12(i + vec2(1.0, 1.0)), u.x), u.y);
}
// Value noise whose fine octaves fade out when a pixel covers more than their period (no shimmering).
float fbm(vec2 p, float footprint) {
    float sum = 0.0;
    float amp = 0.5;
    float total = 0.0;
    for (int k = 0; k < 3; k++) {
        float fade = clamp(1.5 - footprint * 2.0, 0.0, 1.0);
        sum += amp * mix(0.5, vnoise(p), fade);
        total += amp;
        p *= 2.03;
        footprint *= 2.03;
        amp *= 0.5;
    }
    return sum / total;
}
// Anti-aliased "inside a band" of a periodic pattern: 1 inside [lo, hi] of each period, 0 outside, blurred by w.
float band(float x, float lo, float hi, float w) {
    float f = fract(x);
    return smoothstep(lo - w, lo + w, f) * (1.0 - smoothstep(hi - w, hi + w, f));
}

vec3 lamp_light(vec3 P, vec3 N) {
    vec3 light = vec3(0.0);
    for (int i = 0; i < u_num_lamps; i++) {
        vec3 L = u_lamps[i] - P;
        float d2 = dot(L, L);
        float ndl = max(dot(N, L * inversesqrt(d2)), 0.0);
        float window = clamp(1.0 - d2 / 1600.0, 0.0, 1.0);
        light += ndl * window * window * 45.0 / (d2 + 8.0);
    }
    return light * u_lamp_color * u_lamp_intensity;
}

vec3 shade(vec3 albedo, vec3 P, vec3 N, vec3 emissive, float occlusion) {
    float ndl = max(dot(N, u_sun_dir), 0.0);
    float up = 0.5 + 0.5 * N.z;
    vec3 light = u_sun_color * ndl + mix(u_ground_light, u_sky_light, up) * occlusion;
    light += lamp_light(P, N);
    return albedo * light + emissive;
}

vec3 finish(vec3 color, vec3 P) {
    float dist = length(P - u_cam_pos);
    color *= u_exposure;
    color = color / (1.0 + 0.25 * max(color - 0.8, 0.0));
    color = mix(u_fog_color, color, exp(-u_fog_density * dist));
    return pow(clamp(color, 0.0, 1.0), vec3(1.0 / 1.15));
}

void write_outputs(vec3 color, vec3 P, float label) {
    f_color = vec4(finish(color, P), 1.0);
    f_depth = dot(P - u_cam_pos, u_cam_forward);
    f_label = label / 255.0;
}
""".replace("MAX_LAMPS", str(MAX_LAMPS))

# Label values of the ground classes, as GLSL constants L_ROAD, L_PATH, ...
_GROUND_DEFINES = "".join(f"#define L_{name.upper()} {label_id(name)}\n" for name in GROUND_PRIORITY)

SKY_VERTEX = """
#version 330
in vec2 in_ndc;
out vec2 v_ndc;
void main() {
    v_ndc = in_ndc;
    gl_Position = vec4(in_ndc, 1.0, 1.0);  // on the far plane: drawn only where nothing else was
}
"""

SKY_FRAGMENT = (
    _COMMON
    + """
uniform mat4 u_inv_viewproj;
uniform vec3 u_sky_zenith;
uniform vec3 u_sky_horizon;
uniform vec3 u_sun_glow;
uniform float u_clouds;
uniform float u_stars;
in vec2 v_ndc;
void main() {
    vec4 far = u_inv_viewproj * vec4(v_ndc, 1.0, 1.0);
    vec4 near = u_inv_viewproj * vec4(v_ndc, -1.0, 1.0);
    vec3 dir = normalize(far.xyz / far.w - near.xyz / near.w);
    float el = dir.z;
    float t = pow(clamp(1.0 - max(el, 0.0), 0.0, 1.0), 3.0);
    vec3 color = mix(u_sky_zenith, u_sky_horizon, t);
    if (el < 0.0) color = mix(u_sky_horizon, u_fog_color, clamp(-el * 4.0, 0.0, 1.0));
    float sun = max(dot(dir, u_sun_dir), 0.0);
    color += u_sun_glow * (pow(sun, 600.0) * 4.0 + pow(sun, 12.0) * 0.35);
    if (el > 0.0) {
        vec2 cp = dir.xy / (el + 0.08) * 3.0;  // a cloud layer: noise on a horizontal plane
        float c = fbm(cp * 0.6, 0.0) * 0.7 + fbm(cp * 2.1 + 7.0, 0.0) * 0.3;
        float cover = smoothstep(1.0 - u_clouds, 1.15 - u_clouds * 0.5, c) * smoothstep(0.0, 0.15, el);
        vec3 cloud = mix(u_sky_horizon, vec3(1.0), 0.6) * (u_sun_color * 0.5 + u_sky_light * 1.2);
        color = mix(color, cloud, cover * 0.9 * min(u_clouds * 3.0, 1.0));
        vec2 sp = floor(dir.xy / (el + 0.3) * 420.0);
        float star = step(0.9975, hash12(sp)) * hash12(sp + 3.7);
        color += vec3(u_stars * star * smoothstep(0.05, 0.3, el));
    }
    f_color = vec4(pow(clamp(color * u_exposure, 0.0, 1.0), vec3(1.0 / 1.15)), 1.0);
    f_depth = 0.0;
    f_label = 0.0;
}
"""
)

GROUND_VERTEX = """
#version 330
uniform mat4 u_viewproj;
in vec3 in_pos;
out vec3 v_pos;
void main() {
    v_pos = in_pos;
    gl_Position = u_viewproj * vec4(in_pos, 1.0);
}
"""

GROUND_FRAGMENT = (
    _COMMON
    + _GROUND_DEFINES
    + """
uniform usampler2D u_ground;     // R: label, G: distance to the nearest building (dm, 255 = far), B: membership
uniform vec2 u_grid_origin;      // (x_min, y_max) of the raster, metres
uniform float u_grid_res;        // metres per texel
uniform ivec2 u_grid_size;       // (width, height) texels
uniform int u_default_label;     // label outside the raster
in vec3 v_pos;

vec3 paving(vec2 p, float fp, vec3 base, float size) {
    float joints = band(p.x / size, 0.04, 0.96, fp / size) * band(p.y / size + 0.5 * floor(p.x / size),
                                                                    0.04, 0.96, fp / size);
    float slab = hash12(floor(p / size) + 0.5 * floor(p.x / size));
    return base * (0.88 + 0.12 * slab) * mix(1.0, 0.78 + 0.22 * joints, clamp(1.0 - fp / size * 3.0, 0.0, 1.0))
           * (0.9 + 0.2 * fbm(p * 3.0, fp * 3.0));
}

uvec3 texel(ivec2 cr) {  // (label, building distance, membership) of texel column c, row r
    if (cr.x < 0 || cr.y < 0 || cr.x >= u_grid_size.x || cr.y >= u_grid_size.y)
        return uvec3(uint(u_default_label), 255u, 255u);
    return texelFetch(u_ground, cr, 0).rgb;
}

void main() {
    vec2 p = v_pos.xy;
    float fp = max(length(fwidth(p)), 1e-4);  // metres covered by this pixel
    // The label rule of Scene.ground_label_at: bilinear interpolation of the 4 texels' class memberships.
    vec2 g = vec2(p.x - u_grid_origin.x, u_grid_origin.y - p.y) / u_grid_res - 0.5;
    ivec2 c0 = ivec2(floor(g));
    vec2 f = g - floor(g);
    uvec3 t00 = texel(c0), t10 = texel(c0 + ivec2(1, 0)), t01 = texel(c0 + ivec2(0, 1)), t11 = texel(c0 + ivec2(1, 1));
    vec4 w = vec4((1.0 - f.x) * (1.0 - f.y), f.x * (1.0 - f.y), (1.0 - f.x) * f.y, f.x * f.y);
    uvec4 labels = uvec4(t00.x, t10.x, t01.x, t11.x);
    vec4 member = vec4(t00.z, t10.z, t01.z, t11.z) / 255.0;
    float best = -1.0;
    int label = u_default_label;
    for (int k = 0; k < 4; k++) {
        vec4 same = vec4(equal(labels, uvec4(labels[k])));
        float total = dot(w, mix(1.0 - member, member, same));
        if (total > best + 1e-6) { best = total; label = int(labels[k]); }
    }
    float building_dm = dot(w, vec4(t00.y, t10.y, t01.y, t11.y));
    float n1 = fbm(p * 0.35, fp * 0.35);
    float n2 = fbm(p * 4.0, fp * 4.0);
    vec3 albedo;
    float leaves = 0.0;
    if (label == L_ROAD || label == L_BUSWAY) {          // road, busway: asphalt
        albedo = vec3(0.30, 0.30, 0.31) * (0.85 + 0.25 * n1) * (0.9 + 0.2 * n2);
        if (label == L_BUSWAY) albedo *= vec3(1.25, 0.9, 0.85);
    } else if (label == L_CYCLEWAY) {                            // cycleway: red asphalt
        albedo = vec3(0.52, 0.30, 0.27) * (0.85 + 0.25 * n1) * (0.9 + 0.2 * n2);
    } else if (label == L_PATH) {                            // footway, path: light fine asphalt
        albedo = vec3(0.47, 0.46, 0.45) * (0.9 + 0.15 * n1) * (0.85 + 0.3 * fbm(p * 9.0, fp * 9.0));
        leaves = 0.4;
    } else if (label == L_KERB) {                            // kerb: granite
        albedo = vec3(0.62, 0.61, 0.60) * (0.85 + 0.3 * n2);
    } else if (label == L_RAILWAY) {                            // railway: ballast
        albedo = vec3(0.40, 0.36, 0.32) * (0.7 + 0.6 * fbm(p * 9.0, fp * 9.0));
    } else if (label == L_PARKING) {                            // parking: asphalt with bay lines
        albedo = vec3(0.34, 0.34, 0.35) * (0.85 + 0.25 * n1) * (0.9 + 0.2 * n2);
        float line = 1.0 - band(p.x / 2.5, 0.03, 0.97, fp / 2.5);
        albedo = mix(albedo, vec3(0.85), line * clamp(1.0 - fp * 2.0, 0.0, 1.0));
    } else if (label == L_PLAYGROUND) {                            // playground: sand
        albedo = vec3(0.78, 0.68, 0.50) * (0.85 + 0.3 * n2);
    } else if (label == L_WATER) {                            // water
        albedo = mix(vec3(0.10, 0.22, 0.30), u_sky_light, 0.25) * (0.85 + 0.3 * fbm(p * 0.8, fp * 0.8));
    } else if (label == L_GRASS || label == L_PARK) {  // grass, park lawn
        vec3 green = label == L_GRASS ? vec3(0.30, 0.47, 0.18) : vec3(0.25, 0.45, 0.17);
        vec3 dry = vec3(0.45, 0.42, 0.22);
        albedo = mix(green, dry, 0.3 * u_foliage + 0.35 * n1) * (0.8 + 0.4 * n2);
        leaves = 1.0;
    } else if (label == L_FOREST) {                           // forest floor
        albedo = mix(vec3(0.20, 0.28, 0.12), vec3(0.30, 0.25, 0.15), n1) * (0.75 + 0.5 * n2);
        leaves = 1.0;
    } else {                                                      // unmapped ground: large concrete slabs
        albedo = paving(p, fp, vec3(0.60, 0.58, 0.55), 1.2);
        leaves = 0.3;
    }
    if (u_foliage > 0.0 && leaves > 0.0) {                        // fallen leaves
        float lf = fbm(p * 6.0, fp * 6.0) * (0.6 + 0.8 * n1);
        float cover = smoothstep(0.62 - 0.12 * leaves, 0.72, lf) * u_foliage * leaves;
        vec3 leaf = mix(vec3(0.80, 0.45, 0.10), vec3(0.75, 0.62, 0.15), hash12(floor(p * 8.0)));
        albedo = mix(albedo, leaf, cover * clamp(1.0 - fp * 4.0, 0.0, 1.0) + cover * 0.3);
    }
    float occlusion = 0.55 + 0.45 * smoothstep(0.0, 25.0, building_dm);  // darker along the walls
    vec3 P = vec3(p, 0.0);
    write_outputs(shade(albedo, P, vec3(0.0, 0.0, 1.0), vec3(0.0), occlusion), P, float(label));
}
"""
)

OBJECT_VERTEX = """
#version 330
uniform mat4 u_viewproj;
in vec3 in_pos;
in vec3 in_normal;
in vec2 in_uv;
in vec3 in_color;
in vec4 in_params;   // kind, label, a, b
in vec2 in_extra;    // c, d
out vec3 v_pos;
out vec3 v_normal;
out vec2 v_uv;
out vec3 v_color;
flat out vec4 v_params;
flat out vec2 v_extra;
void main() {
    v_pos = in_pos;
    v_normal = in_normal;
    v_uv = in_uv;
    v_color = in_color;
    v_params = in_params;
    v_extra = in_extra;
    gl_Position = u_viewproj * vec4(in_pos, 1.0);
}
"""

OBJECT_FRAGMENT = (
    _COMMON
    + """
in vec3 v_pos;
in vec3 v_normal;
in vec2 v_uv;
in vec3 v_color;
flat in vec4 v_params;
flat in vec2 v_extra;

// kinds (see scene.py): 0 wall, 1 roof, 2 trunk, 3 crown, 4 metal, 5 lamp head, 6 paint, 7 plain, 8 hedge,
// 9 barrier (fence / wall ribbon)
void main() {
    int kind = int(v_params.x + 0.5);
    float label = v_params.y;
    vec3 N = normalize(v_normal);
    if (!gl_FrontFacing) N = -N;
    vec3 P = v_pos;
    float fp = max(length(fwidth(P)), 1e-4);
    vec3 albedo = v_color;
    vec3 emissive = vec3(0.0);
    float occlusion = 1.0;
    if (kind == 0) {
        // facade: uv = (metres along the wall, metres above the wall's base); a = floor height, b = window column
        // width (0: no windows); extra = (building seed, wall index)
        float floor_h = v_params.z;
        float col_w = v_params.w;
        float seed = v_extra.x;
        float u = v_uv.x;
        float v = v_uv.y;
        float plaster = fbm(vec2(u + P.z * 0.37, v) * 2.5, fp * 2.5);
        albedo = v_color * (0.88 + 0.2 * plaster);
        float storey = floor(v / floor_h);
        float fv = fract(v / floor_h);
        float cornice = 1.0 - band(v / floor_h, 0.03, 1.0, fp / floor_h);
        albedo *= 1.0 - 0.18 * cornice * step(0.5, storey);
        if (col_w > 0.0) {
            float wfrac = 0.38 + 0.25 * hash12(vec2(seed * 97.0, 3.0));
            float hfrac = 0.45 + 0.2 * hash12(vec2(seed * 53.0, 7.0));
            float lo_v = 0.5 - hfrac * 0.5 + 0.05;
            if (storey < 0.5) { wfrac = 0.75; lo_v = 0.12; hfrac = 0.68; }  // shop fronts
            float fw = fp / col_w;
            float fh = fp / floor_h;
            float win = band(u / col_w, 0.5 - wfrac * 0.5, 0.5 + wfrac * 0.5, fw)
                      * band(v / floor_h, lo_v, lo_v + hfrac, fh);
            float frame = band(u / col_w, 0.5 - wfrac * 0.5 - 0.05, 0.5 + wfrac * 0.5 + 0.05, fw)
                        * band(v / floor_h, lo_v - 0.04, lo_v + hfrac + 0.04, fh);
            vec3 id = vec3(floor(u / col_w), storey, v_extra.y + seed * 1000.0);
            float r = hash13(id + 0.37);
            vec3 glass = vec3(0.10, 0.13, 0.16) + 0.08 * r + u_sky_light * 0.15;
            albedo = mix(albedo, vec3(0.85, 0.84, 0.80), (frame - win) * 0.8);
            albedo = mix(albedo, glass, win);
            float lit = step(hash13(id * 1.7 + 11.0), u_window_lit);
            emissive = u_window_color * (0.45 + 0.5 * r) * lit * win;
        }
        albedo *= 1.0 - 0.25 * (1.0 - smoothstep(0.35, 0.4, v));  // plinth
        occlusion = 0.65 + 0.35 * smoothstep(0.0, 2.5, v);
    } else if (kind == 1) {                                           // roof
        albedo = v_color * (0.85 + 0.3 * fbm(P.xy * 1.3, fp * 1.3));
    } else if (kind == 2) {                                           // bark
        albedo = v_color * (0.7 + 0.5 * fbm(vec2(atan(N.y, N.x) * 3.0, P.z * 4.0), fp * 4.0));
    } else if (kind == 3) {                                           // foliage
        float seed = v_extra.x;
        vec3 summer = mix(vec3(0.18, 0.36, 0.12), vec3(0.28, 0.45, 0.15), seed);
        vec3 autumn = mix(vec3(0.85, 0.55, 0.12), vec3(0.70, 0.22, 0.08), fract(seed * 7.3));
        autumn = mix(autumn, vec3(0.45, 0.45, 0.15), step(0.8, fract(seed * 3.1)));
        float n = fbm(P.xy * 2.2 + P.z * 1.7, fp * 2.2) * 0.6 + fbm(P.yz * 2.9 + 5.0, fp * 2.9) * 0.4;
        albedo = mix(summer, autumn, u_foliage) * (0.6 + 0.8 * n);
        occlusion = 0.6 + 0.4 * n;
    } else if (kind == 5) {                                           // lamp head, glowing when lamps are on
        albedo = v_color;
        emissive = u_lamp_color * u_lamp_intensity * (N.z < -0.5 ? 3.0 : 1.2);
    } else if (kind == 6) {                                           // road paint
        albedo = v_color * (0.8 + 0.25 * fbm(P.xy * 5.0, fp * 5.0));
    } else if (kind == 8) {                                           // hedge
        float n = fbm(P.xy * 3.0 + P.z * 2.0, fp * 3.0);
        albedo = mix(vec3(0.16, 0.30, 0.10), vec3(0.32, 0.34, 0.12), 0.5 * u_foliage) * (0.6 + 0.8 * n);
    } else if (kind == 9) {                                           // fence / wall ribbon
        float slats = band(v_uv.x / 0.15, 0.15, 1.0, fp / 0.15);
        albedo = v_color * (0.75 + 0.25 * slats) * (0.9 + 0.2 * fbm(v_uv * 3.0, fp * 3.0));
    } else {                                                          // metal and plain parts
        albedo = v_color * (0.9 + 0.15 * fbm(P.xy * 4.0 + P.z * 3.0, fp * 4.0));
    }
    write_outputs(shade(albedo, P, N, emissive, occlusion), P, label);
}
"""
)
